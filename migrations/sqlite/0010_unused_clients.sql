-- The registry reaps never-used clients from the store by age, without reading every client.
CREATE INDEX clients_unused_by_age ON clients (issued_at) WHERE used = 0;
