-- The text rules that fire for each screened listing, with their evidence.
-- A rule fires for a listing when one of its terms (or regexes) was found in a field the rule
-- searches, one of its `requires_any` context terms was found (if it has any), none of its
-- exclusions was found, and the rule is in force in the listing's country of sale.
-- Returns: listing_id, rule_id, weight, shadow, caps, term, field, text (one row per term or
-- context hit of a rule that fires; weight is what the rule adds to the listing's score, shadow
-- a rule that is reported and never counted, caps a rule after which at most review).
-- Parameters: none.
-- Inputs:
--   candidates(listing_id, country_of_sale, ...)      the screened listings
--   hits(listing_id, pattern_id, field, text)          what the precise match found
--   patterns(pattern_id, rule_id, role, term, in_title, in_description)
--   rule_scope(country, rule_id, weight, shadow, caps, requires_context)   '*' = every other country
WITH found AS (
    SELECT h.listing_id, p.rule_id, p.role, p.term, h.field, h.text
    FROM hits h
    JOIN patterns p USING (pattern_id)
    WHERE p.role <> 'term'
       OR (h.field = 'title' AND p.in_title)
       OR (h.field = 'description' AND p.in_description)
),
overridden AS (
    SELECT DISTINCT country FROM rule_scope WHERE country <> '*'
),
scoped AS (  -- each listing's key into rule_scope: its country if overridden, else '*'
    SELECT
        c.listing_id,
        CASE WHEN o.country IS NULL THEN '*' ELSE c.country_of_sale END AS scope
    FROM candidates c
    LEFT JOIN overridden o ON o.country = c.country_of_sale
    WHERE c.listing_id IN (SELECT listing_id FROM found)
),
in_force AS (
    SELECT s.listing_id, r.rule_id, r.weight, r.shadow, r.caps, r.requires_context
    FROM scoped s
    JOIN rule_scope r ON r.country = s.scope
),
per_rule AS (
    SELECT
        listing_id,
        rule_id,
        bool_or(role = 'term') AS has_term,
        bool_or(role = 'context') AS has_context,
        bool_or(role = 'exclusion') AS excluded
    FROM found
    GROUP BY listing_id, rule_id
)
SELECT DISTINCT f.listing_id, f.rule_id, i.weight, i.shadow, i.caps, f.term, f.field, f.text
FROM found f
JOIN per_rule r USING (listing_id, rule_id)
JOIN in_force i USING (listing_id, rule_id)
WHERE r.has_term
  AND NOT r.excluded
  AND (NOT i.requires_context OR r.has_context)
  AND f.role IN ('term', 'context')
ORDER BY f.listing_id, f.rule_id, f.field, f.term
