-- Findings counted by country of sale and decision.
-- Returns: country_of_sale, delist, review, exempted. Parameters: none. Inputs: findings.
SELECT
    country_of_sale,
    count(*) FILTER (WHERE decision = 'delist') AS delist,
    count(*) FILTER (WHERE decision = 'review') AS review,
    count(*) FILTER (WHERE decision = 'exempted') AS exempted
FROM findings
GROUP BY country_of_sale
ORDER BY delist + review + exempted DESC, country_of_sale
