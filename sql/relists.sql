-- Which caught listings are relists: the seller had listings delisted under the policy in an
-- earlier run, or the title closely matches one delisted earlier (any seller).
-- Returns: listing_id, relist_of (the earlier delisted listing), relist_reason ('seller' or
--          'title'), similarity (token-set Jaccard of the titles, for 'title').
-- Parameters:
--   $min_similarity   the Jaccard similarity from which two titles are "the same listing"
--   $common_tokens    a token in more earlier titles than this says nothing ("miner")
-- Inputs:
--   caught(listing_id, seller_id, tokens)           this run's findings, titles tokenised
--   past(listing_id, seller_id, tokens, run_id)     listings delisted by earlier runs and not
--                                                   reinstated since
WITH by_seller AS (  -- each seller's earliest delisted listing, then joined: no seller's
                     -- caught x past listings are ever multiplied out
    SELECT c.listing_id, p.earlier
    FROM caught c
    JOIN (SELECT seller_id, min(listing_id) AS earlier FROM past GROUP BY seller_id) p
      ON p.seller_id = c.seller_id
),
past_tokens AS (
    SELECT listing_id, unnest(tokens) AS token, len(tokens) AS n FROM past
),
common AS (
    SELECT token FROM past_tokens GROUP BY token HAVING count(*) > $common_tokens
),
caught_tokens AS (
    SELECT listing_id, unnest(tokens) AS token, len(tokens) AS n FROM caught
),
shared AS (
    SELECT
        c.listing_id,
        p.listing_id AS earlier,
        count(*) / (any_value(c.n) + any_value(p.n) - count(*)) AS similarity
    FROM caught_tokens c
    JOIN past_tokens p USING (token)
    WHERE token NOT IN (SELECT token FROM common)
    GROUP BY c.listing_id, p.listing_id
),
by_title AS (
    SELECT listing_id, arg_max(earlier, similarity) AS earlier, max(similarity) AS similarity
    FROM shared
    WHERE similarity >= $min_similarity
    GROUP BY listing_id
)
SELECT
    c.listing_id,
    coalesce(s.earlier, t.earlier) AS relist_of,
    CASE WHEN s.earlier IS NOT NULL THEN 'seller' ELSE 'title' END AS relist_reason,
    t.similarity
FROM caught c
LEFT JOIN by_seller s USING (listing_id)
LEFT JOIN by_title t USING (listing_id)
WHERE s.earlier IS NOT NULL OR t.earlier IS NOT NULL
ORDER BY c.listing_id
