-- Findings caught by their text outside every prohibited category.
-- Returns: evasions. Parameters: none. Inputs: findings.
SELECT count(*) AS evasions
FROM findings
WHERE evasion
