select c.customer_id, c.name, sum(o.amount) as revenue
from {{ ref('stg_customers') }} as c
left join {{ ref('stg_orders') }} as o using (customer_id)
group by 1, 2
