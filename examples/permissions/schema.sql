-- Two tenants share one shop (SQLite; the same statements run on PostgreSQL and MariaDB).
CREATE TABLE customers (id INTEGER PRIMARY KEY, tenant_id INT NOT NULL, name TEXT, email TEXT);
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  tenant_id INT NOT NULL,
  customer_id INT NOT NULL REFERENCES customers(id),
  total INT
);
INSERT INTO customers VALUES (1, 7, 'Ada', 'ada@acme.example'), (2, 8, 'Bob', 'bob@globex.example');
INSERT INTO orders VALUES (10, 7, 1, 120), (11, 8, 2, 80);
