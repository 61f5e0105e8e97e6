-- Cases a caseworker closed (intake's case.closed): their open referrals are cancelled, a referral routed after the
-- closing (a re-routing in flight) is cancelled as it comes, and the case's status is `closed`.
CREATE TABLE closed_cases (
    case_id   uuid PRIMARY KEY,
    closed_at timestamptz NOT NULL,
    reason    text NOT NULL
);
