-- Findings counted by decision.
-- Returns: decision, findings. Parameters: none. Inputs: findings (the Findings contract).
SELECT decision, count(*) AS findings
FROM findings
GROUP BY decision
ORDER BY decision
