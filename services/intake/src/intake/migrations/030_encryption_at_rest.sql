-- Encryption at rest (issue #8): the victim's fields and the summary are kept only encrypted, each field under
-- the case's own data key (intake.crypto); the data key only wrapped by a key-encryption key from configuration.
-- Rows stored before this migration keep their plaintext columns until erased.
ALTER TABLE cases ALTER COLUMN victim DROP NOT NULL;
ALTER TABLE cases ADD COLUMN victim_sealed jsonb;   -- field name -> base64url(nonce || AES-GCM ciphertext)
ALTER TABLE cases ADD COLUMN summary_sealed text;
-- Set when the case was erased on request: its data key destroyed, its personal data gone; the API answers 410.
ALTER TABLE cases ADD COLUMN erased_at timestamptz;

CREATE TABLE case_keys (
    case_id     uuid PRIMARY KEY REFERENCES cases (case_id),
    kek_id      text NOT NULL,   -- which key-encryption key wrapped it (rotation re-wraps under the current one)
    wrapped_key bytea NOT NULL,  -- nonce || AES-GCM(KEK, data key)
    wrapped_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_keys_kek ON case_keys (kek_id);
