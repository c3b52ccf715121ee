-- Findings counted by rule and decision (a finding counts once under each rule that fired).
-- Returns: rule_id, delist, review, exempted. Parameters: none. Inputs: findings.
SELECT
    rule_id,
    count(*) FILTER (WHERE decision = 'delist') AS delist,
    count(*) FILTER (WHERE decision = 'review') AS review,
    count(*) FILTER (WHERE decision = 'exempted') AS exempted
FROM (SELECT decision, unnest(rule_ids) AS rule_id FROM findings)
GROUP BY rule_id
ORDER BY delist + review + exempted DESC, rule_id
