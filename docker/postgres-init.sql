-- Runs once, when the postgres container initialises an empty data volume.
-- One database per service (DESIGN.md); each service also creates its own if missing
-- and runs its migrations at start-up, so this only makes the layout explicit.
CREATE DATABASE orders;
CREATE DATABASE inventory;
CREATE DATABASE payments;
CREATE DATABASE email;
CREATE DATABASE analytics;
