-- Which personal items a delivered referral's agency may receive (names only, never values): a Kafka-native
-- agency fetches them through the gateway (GET /referrals/{id}/personal), which asks intake for the values.
ALTER TABLE deliveries ADD COLUMN personal_items text[] NOT NULL DEFAULT '{}';
