-- The delisted table of a run's manifest: one statement of reasons per delist outcome.
-- Returns one row per outcome: the listing and its facts (seller, country, category, title,
-- matched terms and the fields they were found in), the ground (policy id, version, rules and
-- their clauses), whether detection and decision were automated, the outcome, and the dates.
-- Parameters:
--   $policy_id, $policy_version   the policy the run applied
--   $decided_at                   when the sweep decided (its as-of time)
-- Inputs:
--   findings(...)   the sweep's findings (the Findings contract)
--   outcomes(listing_id, seller_id, outcome, rule_ids, error, attempts, dry_run, at)
--   clauses(rule_id, clause)      each rule's clause of the policy
WITH grounds AS (
    SELECT
        o.listing_id,
        list(DISTINCT c.clause ORDER BY c.clause) FILTER (WHERE c.clause IS NOT NULL) AS clauses
    FROM outcomes o, unnest(o.rule_ids) AS r(rule_id)
    LEFT JOIN clauses c ON c.rule_id = r.rule_id
    GROUP BY o.listing_id
)
SELECT
    o.listing_id,
    coalesce(f.seller_id, o.seller_id) AS seller_id,
    f.country_of_sale,
    f.category_path,
    f.title,
    $policy_id AS policy_id,
    $policy_version AS policy_version,
    o.rule_ids,
    coalesce(g.clauses, []) AS clauses,
    f.matched_terms,
    list_sort(list_distinct(list_transform(f.evidence, lambda e: e.field))) AS matched_fields,
    f.evasion,
    coalesce(f.relist, false) AS relist,
    f.relist_of,
    f.relist_reason,
    true AS automated_detection,
    true AS automated_decision,
    o.outcome,
    o.error,
    $decided_at::TIMESTAMPTZ AS decided_at,
    o.at AS acted_at
FROM outcomes o
LEFT JOIN findings f USING (listing_id)
LEFT JOIN grounds g USING (listing_id)
ORDER BY o.listing_id
