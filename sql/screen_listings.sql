-- Listings of one snapshot part that the policy may catch.
-- Returns: listing_id, seller_id, country_of_sale, category_path, title, description,
--          updated_at, prohibited_category (the prohibited category path it falls under, or
--          NULL).
-- Parameters:
--   $prefixes   list of prohibited category paths, each followed by ' > ' (a path matches
--               itself and every descendant)
--   $countries  list of countries of sale in scope, or NULL for every country
--   $since      a re-sweep's watermark: only listings updated after it, or NULL for all
-- Inputs: view `listings` (the snapshot part, columns renamed to the Snapshot contract);
--         function screen_text(text) -> BOOLEAN, the matcher's first stage, given title and
--         description each followed by a newline (the newline keeps rows apart in its buffer).
WITH active AS (
    SELECT
        listing_id, seller_id, country_of_sale, category_path, title, description, updated_at,
        list_filter($prefixes, lambda p: starts_with(category_path || ' > ', p))[1] AS prefix
    FROM listings
    WHERE status = 'ACTIVE'
      AND ($countries IS NULL OR list_contains($countries, country_of_sale))
      AND ($since IS NULL OR updated_at > $since)
)
SELECT
    listing_id, seller_id, country_of_sale, category_path, title, description, updated_at,
    left(prefix, length(prefix) - 3) AS prohibited_category
FROM active
WHERE prefix IS NOT NULL OR screen_text(concat(title, chr(10), description, chr(10)))
