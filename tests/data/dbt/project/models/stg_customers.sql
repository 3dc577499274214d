-- customer 11 appears twice (the unique test warns); customer 12 has no orders (its revenue is null)
select * from (values (10, 'Ada'), (11, 'Grace'), (11, 'Grace H.'), (12, 'Linus')) as t(customer_id, name)
