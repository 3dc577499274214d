select * from (values (1, 10, 25.0), (2, 11, 40.0), (3, 10, 12.5)) as t(order_id, customer_id, amount)
