"""Services: the domain rules carried out with the API clients and the database."""
