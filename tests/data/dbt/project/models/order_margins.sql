-- FAILING on purpose: stg_orders has no "cost" column, so the database refuses the model
select order_id, amount - cost as margin from {{ ref('stg_orders') }}
