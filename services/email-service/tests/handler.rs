//! The Email Service's handler fed the golden events straight, with the mail written to a
//! temporary mail directory: one mail per order, once it is decided, and none for a placement.

use email_service::NotifyCustomer;
use email_service::db::TEST_MIGRATOR;
use email_service::mailer::Mailer;
use serde_json::{Value, json};
use shop_runtime::kafka::HandlerError;
use shop_runtime::testing;
use shop_runtime::{Envelope, Event};
use sqlx::PgPool;
use tempfile::TempDir;
use uuid::Uuid;

/// An event of type `event_type` about `order_id`, from its golden file, with a new event id.
fn event(event_type: &str, order_id: Uuid) -> Envelope<Event> {
    event_with(event_type, order_id, |_| {})
}

fn event_with(event_type: &str, order_id: Uuid, tweak: impl FnOnce(&mut Value)) -> Envelope<Event> {
    testing::golden_event(event_type, order_id, tweak)
}

/// The handler, mailing into its own temporary directory.
struct Mailroom {
    dir: TempDir,
    handler: NotifyCustomer,
}

impl Mailroom {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let handler = NotifyCustomer {
            mailer: Mailer::new(None, dir.path()).unwrap(),
            from: "Shop <shop@example.com>".parse().unwrap(),
        };
        Mailroom { dir, handler }
    }

    /// Applies `events` in one transaction, as the consumer would; returns the repeats.
    async fn apply(
        &self,
        pool: &PgPool,
        events: &[Envelope<Event>],
    ) -> Result<usize, HandlerError> {
        testing::apply(&self.handler, pool, events).await
    }

    /// The names of the files in the mail directory, sorted.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// The one mail of `order_id`, as written; panics when there is none.
    fn eml(&self, order_id: Uuid) -> String {
        let path = self.dir.path().join(format!("{order_id}.eml"));
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }
}

/// `(kind, recipient, subject)` of every recorded mail of `order_id`.
async fn recorded(pool: &PgPool, order_id: Uuid) -> Vec<(String, String, String)> {
    sqlx::query_as("SELECT kind, recipient, subject FROM emails WHERE order_id = $1")
        .bind(order_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

fn short(order_id: Uuid) -> String {
    order_id.simple().to_string()[..8].to_uppercase()
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_confirmed_order_gets_exactly_one_confirmation_with_its_items_and_total(pool: PgPool) {
    let mailroom = Mailroom::new();
    let order_id = Uuid::new_v4();
    let confirmed = event("order_confirmed", order_id);
    let batch = [event("order_placed", order_id), confirmed.clone()];

    assert_eq!(mailroom.apply(&pool, &batch).await.unwrap(), 0);

    assert_eq!(mailroom.files(), [format!("{order_id}.eml")]);
    let eml = mailroom.eml(order_id);
    let subject = format!("Your order {} is confirmed", short(order_id));
    for expected in [
        "To: ada@example.com",
        "From: Shop <shop@example.com>",
        &format!("Subject: {subject}"),
        &format!("Message-ID: <{}@shop.local>", confirmed.meta.event_id),
        "KB-001",
        "3 x CB-005",
        "Total: 128.96 EUR",
        "Content-Transfer-Encoding: 7bit",
    ] {
        assert!(eml.contains(expected), "{expected:?} missing from\n{eml}");
    }
    assert!(!eml.contains("cancelled"), "{eml}");
    assert_eq!(
        recorded(&pool, order_id).await,
        [(
            "confirmation".to_owned(),
            "ada@example.com".to_owned(),
            subject
        )]
    );
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbox, 0, "the Email Service announces nothing");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_cancelled_order_gets_exactly_one_cancellation_notice_naming_the_reason(pool: PgPool) {
    let mailroom = Mailroom::new();
    let order_id = Uuid::new_v4();
    mailroom
        .apply(&pool, &[event("order_placed", order_id)])
        .await
        .unwrap();
    let cancelled = event_with("order_cancelled", order_id, |value| {
        value["data"]["reason"] =
            json!("card declined: 128.96 EUR is over the card limit of 100.00 EUR");
    });

    assert_eq!(mailroom.apply(&pool, &[cancelled]).await.unwrap(), 0);

    assert_eq!(mailroom.files(), [format!("{order_id}.eml")]);
    let eml = mailroom.eml(order_id);
    let subject = format!("Your order {} is cancelled", short(order_id));
    for expected in [
        "To: ada@example.com",
        &format!("Subject: {subject}"),
        "Why:",
        "  card declined: 128.96 EUR is over the card limit of 100.00 EUR\r\n",
        "KB-001",
        "3 x CB-005",
        "Nothing was charged: no money was taken",
        // Plain text as written, not quoted-printable: what the customer reads.
        "Content-Transfer-Encoding: 7bit",
    ] {
        assert!(eml.contains(expected), "{expected:?} missing from\n{eml}");
    }
    assert!(!eml.contains("is confirmed"), "{eml}");
    assert_eq!(
        recorded(&pool, order_id).await,
        [(
            "cancellation".to_owned(),
            "ada@example.com".to_owned(),
            subject
        )]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_placed_order_is_not_mailed_before_it_is_decided(pool: PgPool) {
    let mailroom = Mailroom::new();
    let order_id = Uuid::new_v4();

    let repeats = mailroom
        .apply(&pool, &[event("order_placed", order_id)])
        .await
        .unwrap();

    assert_eq!(repeats, 0, "an event this service ignores is no repeat");
    assert!(mailroom.files().is_empty(), "{:?}", mailroom.files());
    assert!(recorded(&pool, order_id).await.is_empty());
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_decision_repeated_under_a_new_event_id_sends_nothing_more(pool: PgPool) {
    let mailroom = Mailroom::new();
    let order_id = Uuid::new_v4();
    let first = event("order_confirmed", order_id);
    mailroom
        .apply(&pool, std::slice::from_ref(&first))
        .await
        .unwrap();
    let sent = mailroom.eml(order_id);

    // Again in a later batch, twice in one batch, and even as the other decision.
    let later = [
        event("order_confirmed", order_id),
        event("order_cancelled", order_id),
    ];
    assert_eq!(mailroom.apply(&pool, &later).await.unwrap(), 2);
    let other = Uuid::new_v4();
    let twice = [
        event("order_cancelled", other),
        event("order_cancelled", other),
    ];
    assert_eq!(mailroom.apply(&pool, &twice).await.unwrap(), 1);

    assert_eq!(
        mailroom.eml(order_id),
        sent,
        "the first mail, left as it was"
    );
    assert!(sent.contains(&format!("Message-ID: <{}@shop.local>", first.meta.event_id)));
    let mut expected = vec![format!("{order_id}.eml"), format!("{other}.eml")];
    expected.sort();
    assert_eq!(mailroom.files(), expected);
    assert_eq!(recorded(&pool, order_id).await.len(), 1);
    assert_eq!(recorded(&pool, other).await.len(), 1);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_address_the_mailer_cannot_use_fails_for_good_before_anyone_is_mailed(pool: PgPool) {
    let mailroom = Mailroom::new();
    let (good, bad) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = [
        event("order_confirmed", good),
        event_with("order_cancelled", bad, |value| {
            value["data"]["customer_email"] = json!("ada@example..com");
        }),
    ];

    let err = mailroom.apply(&pool, &batch).await.unwrap_err();

    assert!(matches!(err, HandlerError::Permanent(_)), "{err}");
    assert!(err.to_string().contains("ada@example..com"), "{err}");
    assert!(
        mailroom.files().is_empty(),
        "nobody mailed: {:?}",
        mailroom.files()
    );
    let emails: i64 = sqlx::query_scalar("SELECT count(*) FROM emails")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(emails, 0);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn the_mail_listing_says_which_kind_of_mail_each_order_got(pool: PgPool) {
    let mailroom = Mailroom::new();
    let (confirmed, cancelled) = (Uuid::new_v4(), Uuid::new_v4());
    mailroom
        .apply(
            &pool,
            &[
                event("order_confirmed", confirmed),
                event("order_cancelled", cancelled),
            ],
        )
        .await
        .unwrap();

    let list = get(&pool, "/emails").await;
    let mut kinds: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|mail| {
            (
                mail["order_id"].as_str().unwrap().to_owned(),
                mail["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    kinds.sort();
    let mut expected = vec![
        (confirmed.to_string(), "confirmation".to_owned()),
        (cancelled.to_string(), "cancellation".to_owned()),
    ];
    expected.sort();
    assert_eq!(kinds, expected);
    let one = get(&pool, &format!("/emails/{cancelled}")).await;
    assert_eq!(one["kind"], "cancellation");
    assert_eq!(one["recipient"], "ada@example.com");
}

async fn get(pool: &PgPool, uri: &str) -> Value {
    let response = tower::ServiceExt::oneshot(
        email_service::routes::router(pool.clone()),
        axum::http::Request::get(uri)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200, "GET {uri}");
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}
