-- The review table of a run's manifest: listings sent to a human, never delisted by the run.
-- Returns one statement per review finding: facts, ground, and that the decision is not
-- automated (the detection is).
-- Parameters: $policy_id, $policy_version, $decided_at (the sweep's as-of time).
-- Inputs: findings (the Findings contract), clauses(rule_id, clause).
WITH grounds AS (
    SELECT
        f.listing_id,
        list(DISTINCT c.clause ORDER BY c.clause) FILTER (WHERE c.clause IS NOT NULL) AS clauses
    FROM findings f, unnest(f.rule_ids) AS r(rule_id)
    LEFT JOIN clauses c ON c.rule_id = r.rule_id
    WHERE f.decision = 'review'
    GROUP BY f.listing_id
)
SELECT
    f.listing_id,
    f.seller_id,
    f.country_of_sale,
    f.category_path,
    f.title,
    $policy_id AS policy_id,
    $policy_version AS policy_version,
    f.rule_ids,
    coalesce(g.clauses, []) AS clauses,
    f.matched_terms,
    list_sort(list_distinct(list_transform(f.evidence, lambda e: e.field))) AS matched_fields,
    f.evasion,
    coalesce(f.relist, false) AS relist,
    f.relist_of,
    f.relist_reason,
    true AS automated_detection,
    false AS automated_decision,
    $decided_at::TIMESTAMPTZ AS decided_at
FROM findings f
LEFT JOIN grounds g USING (listing_id)
WHERE f.decision = 'review'
ORDER BY f.listing_id
