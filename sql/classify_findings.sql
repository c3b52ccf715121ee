-- One finding per listing the policy catches, with its evidence and its score.
-- Returns the Findings contract: listing_id, seller_id, country_of_sale, category_path, decision,
-- rule_ids, matched_terms, evasion; and title, updated_at (the snapshot's version of the
-- listing, on which a delisting is conditioned), prohibited_category, evidence, exemption_ids,
-- the relist columns (set later), score and shadow_decision.
-- Score: the sum of the weights of the live rules that fired for the listing, each rule once,
-- exempted rules aside (counter-evidence weighs less than zero).
-- Decision: a prohibited category (not exempted) -> 'delist', whatever the score, except where
-- the category says `when_text_disagrees: review` and the text disagrees: its score is below
-- zero (counter-evidence outweighs the evidence: a mug filed as a miner), or a rule `at_most:
-- review` fired (a used card, a hotspot, a shell that says it does not mine) -> 'review', and where
-- it says `when_text_silent: review` and the text says too little to act on by itself (a score
-- below thresholds.review_at: a phone or a book filed there) -> 'review'; else a score
-- at or above thresholds.delist_at -> 'delist', at or above thresholds.review_at -> 'review';
-- a listing that would have been acted on but for its exemptions -> 'exempted'; a listing only
-- rules in shadow would act on -> 'shadow' (reported, nothing done); else no finding.
-- rule_ids and matched_terms are the grounds: live rules of positive weight (and the category).
-- Evasion: acted on (delist or review) while outside every prohibited category.
-- A live rule with `caps` (at_most: review) that fired keeps the text from delisting: at most
-- review.
-- shadow_decision: the decision had the rules in shadow counted, where it would differ.
-- Parameters: none.
-- Inputs:
--   candidates(listing_id, seller_id, country_of_sale, category_path, title, updated_at,
--              prohibited_category)
--   evidence(listing_id, rule_id, weight, shadow, caps, term, field, text)   text rules that fired
--   exemptions(exemption_id, listing_id, seller_id, rule_id)            in force at the as-of date
--   thresholds(delist_at, review_at)                                    one row: the policy's
--   categories(path, review_when_text_disagrees, review_when_text_silent) the prohibited ones
WITH fired AS (
    SELECT listing_id, rule_id, weight, shadow, caps, term, field, text
    FROM evidence
    UNION ALL
    SELECT listing_id, 'category:' || prohibited_category, NULL::DOUBLE, false, false,
           prohibited_category, 'category_path', category_path
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
    SELECT f.*, x.exemption_id,
           -- a ground of the decision: the category, or a live rule that weighs for it
           (f.field = 'category_path' OR (NOT f.shadow AND f.weight > 0)) AS ground
    FROM fired f
    LEFT JOIN exempted x USING (listing_id, rule_id)
),
rule_weights AS (  -- each text rule counts once per listing, however many terms it found
    SELECT listing_id, rule_id, any_value(weight) AS weight, bool_or(shadow) AS shadow,
           bool_or(caps) AS caps, bool_or(exemption_id IS NOT NULL) AS exempt
    FROM judged
    WHERE field <> 'category_path'
    GROUP BY listing_id, rule_id
),
scores AS (
    SELECT
        listing_id,
        coalesce(sum(weight) FILTER (WHERE NOT shadow AND NOT exempt), 0) AS score,
        coalesce(sum(weight) FILTER (WHERE NOT shadow), 0) AS unexempted_score,
        coalesce(sum(weight) FILTER (WHERE NOT exempt), 0) AS shadow_score,
        bool_or(shadow) AS any_shadow,
        coalesce(bool_or(caps) FILTER (WHERE NOT shadow AND NOT exempt), false) AS capped,
        coalesce(bool_or(caps) FILTER (WHERE NOT exempt), false) AS capped_with_shadow
    FROM rule_weights
    GROUP BY listing_id
),
per_listing AS (
    SELECT
        listing_id,
        bool_or(field = 'category_path' AND exemption_id IS NULL) AS category_active,
        bool_or(field = 'category_path') AS category_any,
        any_value(term) FILTER (WHERE field = 'category_path') AS category,
        -- Lists are sorted after the aggregate (faster than ordered aggregates). Evidence sorts
        -- by rule, field, term, text, exemption, then takes the contract's field order.
        list_sort(list_distinct(list(rule_id) FILTER (WHERE ground AND exemption_id IS NULL))) AS active_rules,
        list_sort(list_distinct(list(rule_id) FILTER (WHERE ground))) AS all_rules,
        list_sort(list_distinct(list(term) FILTER (WHERE ground AND exemption_id IS NULL AND field <> 'category_path'))) AS active_terms,
        list_sort(list_distinct(list(term) FILTER (WHERE ground AND field <> 'category_path'))) AS all_terms,
        list_transform(
            list_sort(list({'rule_id': rule_id, 'field': field, 'term': term, 'text': text, 'exemption_id': exemption_id, 'weight': weight, 'shadow': shadow})),
            lambda e: {'rule_id': e.rule_id, 'term': e.term, 'field': e.field, 'text': e.text, 'exemption_id': e.exemption_id, 'weight': e.weight, 'shadow': e.shadow}
        ) AS evidence,
        list_sort(list_distinct(list(exemption_id) FILTER (WHERE exemption_id IS NOT NULL))) AS exemption_ids
    FROM judged
    GROUP BY listing_id
),
decided AS (
    SELECT
        p.*,
        coalesce(s.score, 0) AS score,
        CASE
            WHEN p.category_active AND coalesce(k.review_when_text_disagrees, false)
                 AND (coalesce(s.score, 0) < 0 OR coalesce(s.capped, false)) THEN 'review'
            WHEN p.category_active AND coalesce(k.review_when_text_silent, false)
                 AND coalesce(s.score, 0) < t.review_at THEN 'review'
            WHEN p.category_active THEN 'delist'
            WHEN coalesce(s.score, 0) >= t.delist_at AND NOT coalesce(s.capped, false) THEN 'delist'
            WHEN coalesce(s.score, 0) >= t.review_at THEN 'review'
        END AS acted,
        CASE
            WHEN p.category_active AND coalesce(k.review_when_text_disagrees, false)
                 AND (coalesce(s.shadow_score, 0) < 0 OR coalesce(s.capped_with_shadow, false))
            THEN 'review'
            WHEN p.category_active AND coalesce(k.review_when_text_silent, false)
                 AND coalesce(s.shadow_score, 0) < t.review_at THEN 'review'
            WHEN p.category_active THEN 'delist'
            WHEN coalesce(s.shadow_score, 0) >= t.delist_at
                 AND NOT coalesce(s.capped_with_shadow, false) THEN 'delist'
            WHEN coalesce(s.shadow_score, 0) >= t.review_at THEN 'review'
        END AS with_shadow,
        p.category_any OR coalesce(s.unexempted_score, 0) >= t.review_at AS held_by_exemption,
        coalesce(s.any_shadow, false) AS any_shadow
    FROM per_listing p
    LEFT JOIN scores s USING (listing_id)
    LEFT JOIN categories k ON k.path = p.category
    CROSS JOIN thresholds t
),
final AS (
    SELECT
        *,
        CASE
            WHEN acted IS NOT NULL THEN acted
            WHEN held_by_exemption THEN 'exempted'
            WHEN any_shadow AND with_shadow IS NOT NULL THEN 'shadow'
        END AS decision
    FROM decided
)
SELECT
    c.listing_id,
    c.seller_id,
    c.country_of_sale,
    c.category_path,
    d.decision,
    CASE WHEN d.decision = 'exempted' THEN d.all_rules ELSE coalesce(d.active_rules, []) END AS rule_ids,
    coalesce(CASE WHEN d.decision = 'exempted' THEN d.all_terms ELSE d.active_terms END, []) AS matched_terms,
    (c.prohibited_category IS NULL AND d.decision IN ('delist', 'review')) AS evasion,
    c.title,
    c.updated_at,
    c.prohibited_category,
    d.evidence,
    coalesce(d.exemption_ids, []) AS exemption_ids,
    false AS relist,          -- set when the sweep is closed, against the policy's history
    NULL::VARCHAR AS relist_of,
    NULL::VARCHAR AS relist_reason,
    d.score,
    CASE
        WHEN d.any_shadow AND coalesce(d.with_shadow, 'none') <> coalesce(d.acted, 'none')
        THEN coalesce(d.with_shadow, 'none')
    END AS shadow_decision
FROM candidates c
JOIN final d USING (listing_id)
WHERE d.decision IS NOT NULL
ORDER BY c.listing_id
