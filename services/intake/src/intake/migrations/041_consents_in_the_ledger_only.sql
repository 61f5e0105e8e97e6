-- A case's consents live in the consent ledger alone (040 copied the earlier ones into it): the current state is
-- derived from its rows, so a withdrawal shows wherever the case is read.
DROP TABLE consents;
