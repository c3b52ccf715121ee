-- The exempted table of a run's manifest: every listing the policy would have acted on but
-- for an exemption in force, one row per listing and exemption, with who granted it, why and
-- until when. Nothing was done to these listings; an auditor sees that, and on what grounds.
-- Parameters: $policy_id, $policy_version, $decided_at (the sweep's as-of time).
-- Inputs: findings (the Findings contract), exemptions(exemption_id, reason, granted_by,
--         granted_at, expires) of the policy.
SELECT
    f.listing_id,
    f.seller_id,
    f.country_of_sale,
    f.category_path,
    f.title,
    $policy_id AS policy_id,
    $policy_version AS policy_version,
    f.rule_ids,
    f.matched_terms,
    x.exemption_id,
    e.reason AS exemption_reason,
    e.granted_by AS exemption_granted_by,
    e.granted_at AS exemption_granted_at,
    e.expires AS exemption_expires,
    $decided_at::TIMESTAMPTZ AS decided_at
FROM findings f, unnest(f.exemption_ids) AS x(exemption_id)
LEFT JOIN exemptions e ON e.exemption_id = x.exemption_id
WHERE f.decision = 'exempted'
ORDER BY f.listing_id, x.exemption_id
