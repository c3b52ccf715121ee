-- The shadow table of a run's manifest: every finding a rule in shadow (mode: shadow) matched,
-- with the decision the run made and the one the rules in shadow would have made. Nothing was
-- done because of these rules; compliance reads here what a rule would do before it acts.
-- Parameters: $policy_id, $policy_version, $decided_at (the sweep's as-of time).
-- Inputs: findings (the Findings contract, with evidence and shadow_decision).
SELECT
    f.listing_id,
    f.seller_id,
    f.country_of_sale,
    f.category_path,
    f.title,
    $policy_id AS policy_id,
    $policy_version AS policy_version,
    -- what the run did ('none' for a listing only the rules in shadow would act on)
    CASE WHEN f.decision = 'shadow' THEN 'none' ELSE f.decision END AS decision,
    -- what the rules in shadow would have made it (the same decision when they change nothing)
    coalesce(f.shadow_decision, CASE WHEN f.decision = 'shadow' THEN 'none' ELSE f.decision END)
        AS shadow_decision,
    f.shadow_decision IS NOT NULL AS changed,
    list_sort(list_distinct(list_transform(
        list_filter(f.evidence, lambda e: e.shadow), lambda e: e.rule_id))) AS shadow_rule_ids,
    list_sort(list_distinct(list_transform(
        list_filter(f.evidence, lambda e: e.shadow), lambda e: e.term))) AS shadow_terms,
    f.score,
    $decided_at::TIMESTAMPTZ AS decided_at
FROM findings f
WHERE len(list_filter(f.evidence, lambda e: e.shadow)) > 0
ORDER BY f.listing_id
