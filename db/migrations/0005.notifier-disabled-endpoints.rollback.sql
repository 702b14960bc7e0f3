DROP TABLE IF EXISTS notifier_disabled_endpoints;
