-- A slice of the Chinook music store (same table and column names), enough to run app.py.
-- sqlite3 chinook.db < chinook_subset.sql
CREATE TABLE Artist (
    ArtistId INTEGER NOT NULL PRIMARY KEY,
    Name NVARCHAR(120)
);
CREATE TABLE Genre (
    GenreId INTEGER NOT NULL PRIMARY KEY,
    Name NVARCHAR(120)
);
CREATE TABLE Album (
    AlbumId INTEGER NOT NULL PRIMARY KEY,
    Title NVARCHAR(160) NOT NULL,
    ArtistId INTEGER NOT NULL REFERENCES Artist (ArtistId)
);
CREATE TABLE Track (
    TrackId INTEGER NOT NULL PRIMARY KEY,
    Name NVARCHAR(200) NOT NULL,
    AlbumId INTEGER REFERENCES Album (AlbumId),
    GenreId INTEGER REFERENCES Genre (GenreId),
    Composer NVARCHAR(220),
    Milliseconds INTEGER NOT NULL,
    UnitPrice NUMERIC(10, 2) NOT NULL
);
INSERT INTO Artist VALUES (1, 'AC/DC'), (2, 'Accept'), (3, 'Aerosmith');
INSERT INTO Genre VALUES (1, 'Rock'), (2, 'Jazz');
INSERT INTO Album VALUES
    (1, 'For Those About To Rock We Salute You', 1),
    (2, 'Balls to the Wall', 2),
    (3, 'Restless and Wild', 2),
    (4, 'Let There Be Rock', 1);
INSERT INTO Track VALUES
    (1, 'For Those About To Rock (We Salute You)', 1, 1,
        'Angus Young, Malcolm Young, Brian Johnson', 343719, 0.99),
    (2, 'Balls to the Wall', 2, 1, NULL, 342562, 0.99),
    (3, 'Fast As a Shark', 3, 1, 'F. Baltes, S. Kaufman, U. Dirkscneider & W. Hoffman', 230619, 0.99),
    (4, 'Restless and Wild', 3, 1, 'F. Baltes, R.A. Smith-Diesel, S. Kaufman', 252051, 0.99),
    (5, 'Go Down', 4, 1, 'AC/DC', 331180, 0.99),
    (6, 'Dog Eat Dog', 4, 1, 'AC/DC', 215196, 0.99);
