//! The images the Docker backend runs: the very ones `docker-compose.yml` names, read from it
//! when the tests are compiled, so the tests and `docker compose up` cannot drift apart. To
//! move to a new Kafka or PostgreSQL, change `docker-compose.yml`: that is the one place.

use serde_yaml::Value;

const COMPOSE: &str = include_str!("../../docker-compose.yml");

/// An image as `docker-compose.yml` names it for `service`, split into name and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub tag: String,
}

impl Image {
    /// The image of `service` in `docker-compose.yml`; panics if it names none, which the
    /// tests below would have caught.
    pub fn of(service: &str) -> Image {
        let compose: Value = serde_yaml::from_str(COMPOSE).expect("docker-compose.yml is YAML");
        let image = compose["services"][service]["image"]
            .as_str()
            .unwrap_or_else(|| panic!("docker-compose.yml names no image for {service}"));
        let (name, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{service}'s image {image} has no tag: pin one"));
        Image {
            name: name.to_owned(),
            tag: tag.to_owned(),
        }
    }

    /// The Kafka brokers' image (every broker in compose runs the same one).
    pub fn kafka() -> Image {
        Image::of("kafka-1")
    }

    pub fn postgres() -> Image {
        Image::of("postgres")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docker_backend_runs_the_kafka_and_postgresql_that_compose_runs() {
        let kafka = Image::kafka();
        assert_eq!(kafka.name, "apache/kafka", "the JVM image, as in compose");
        for broker in ["kafka-2", "kafka-3"] {
            assert_eq!(Image::of(broker), kafka, "{broker} runs another Kafka");
        }
        assert_eq!(Image::postgres().name, "postgres");
        let major: u32 = Image::postgres()
            .tag
            .split(['.', '-'])
            .next()
            .and_then(|major| major.parse().ok())
            .expect("PostgreSQL's tag starts with its major version");
        assert!(major >= 13, "PostgreSQL {major} is past its end of life");
    }
}
