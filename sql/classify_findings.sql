-- One finding per listing the policy catches, with its evidence.
-- Returns the Findings contract: listing_id, seller_id, country_of_sale, category_path, decision,
-- rule_ids, matched_terms, evasion; and title, updated_at (the snapshot's version of the
-- listing, on which a delisting is conditioned), prohibited_category, evidence, exemption_ids.
-- Decision: a prohibited category or a `delist` rule -> 'delist'; only `review` rules ->
-- 'review'; every rule that fired exempted -> 'exempted'. Evasion: caught by its text while
-- outside every prohibited category.
-- Parameters: none.
-- Inputs:
--   candidates(listing_id, seller_id, country_of_sale, category_path, title, updated_at,
--              prohibited_category)
--   evidence(listing_id, rule_id, action, term, field, text)      text rules that fired
--   exemptions(exemption_id, listing_id, seller_id, rule_id)       in force at the as-of date
WITH fired AS (
    SELECT listing_id, rule_id, action, term, field, text
    FROM evidence
    UNION ALL
    SELECT listing_id, 'category:' || prohibited_category, 'delist', prohibited_category,
           'category_path', category_path
    FROM candidates
    WHERE prohibited_category IS NOT NULL
),
exempted AS (  -- the exemption in force for a listing and rule, by listing or by seller
    SELECT f.listing_id, f.rule_id, min(e.exemption_id) AS exemption_id
    FROM fired f
    JOIN candidates c USING (listing_id)
    JOIN exemptions e
      ON (e.listing_id = f.listing_id OR e.seller_id = c.seller_id)
    WHERE e.rule_id = f.rule_id OR e.rule_id = '*'
    GROUP BY f.listing_id, f.rule_id
),
judged AS (
    SELECT f.*, x.exemption_id
    FROM fired f
    LEFT JOIN exempted x USING (listing_id, rule_id)
),
per_listing AS (
    SELECT
        listing_id,
        bool_or(action = 'delist' AND exemption_id IS NULL) AS any_delist,
        bool_or(exemption_id IS NULL) AS any_active,
        bool_or(field <> 'category_path' AND exemption_id IS NULL) AS text_active,
        -- Lists are sorted after the aggregate (faster than ordered aggregates). Evidence sorts
        -- by rule, field, term, text, exemption, then takes the contract's field order.
        list_sort(list_distinct(list(rule_id) FILTER (WHERE exemption_id IS NULL))) AS active_rules,
        list_sort(list_distinct(list(rule_id))) AS all_rules,
        list_sort(list_distinct(list(term) FILTER (WHERE exemption_id IS NULL AND field <> 'category_path'))) AS active_terms,
        list_sort(list_distinct(list(term) FILTER (WHERE field <> 'category_path'))) AS all_terms,
        list_transform(
            list_sort(list({'rule_id': rule_id, 'field': field, 'term': term, 'text': text, 'exemption_id': exemption_id})),
            lambda e: {'rule_id': e.rule_id, 'term': e.term, 'field': e.field, 'text': e.text, 'exemption_id': e.exemption_id}
        ) AS evidence,
        list_sort(list_distinct(list(exemption_id) FILTER (WHERE exemption_id IS NOT NULL))) AS exemption_ids
    FROM judged
    GROUP BY listing_id
)
SELECT
    c.listing_id,
    c.seller_id,
    c.country_of_sale,
    c.category_path,
    CASE WHEN p.any_delist THEN 'delist' WHEN p.any_active THEN 'review' ELSE 'exempted' END AS decision,
    CASE WHEN p.any_active THEN p.active_rules ELSE p.all_rules END AS rule_ids,
    coalesce(CASE WHEN p.any_active THEN p.active_terms ELSE p.all_terms END, []) AS matched_terms,
    (c.prohibited_category IS NULL AND coalesce(p.text_active, false)) AS evasion,
    c.title,
    c.updated_at,
    c.prohibited_category,
    p.evidence,
    coalesce(p.exemption_ids, []) AS exemption_ids,
    false AS relist,          -- set when the sweep is closed, against the policy's history
    NULL::VARCHAR AS relist_of,
    NULL::VARCHAR AS relist_reason
FROM candidates c
JOIN per_listing p USING (listing_id)
ORDER BY c.listing_id
