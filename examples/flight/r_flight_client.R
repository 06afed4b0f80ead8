# Read Quiver's Arrow Flight server from R.
#
# R's Flight client is pyarrow's, reached through reticulate (the arrow package's own
# flight_connect()/flight_get() wrap the same pyarrow client). This example needs only
# reticulate and a Python with pyarrow (Quiver's own environment has it); it also uses the
# arrow package when it is installed.
#
#   Debian/Ubuntu: apt-get install r-base-core r-cran-reticulate
#   elsewhere:     install.packages("reticulate")      (and "arrow", optional)
#   quiver demo                                          # in another terminal
#   RETICULATE_PYTHON=.venv/bin/python Rscript examples/flight/r_flight_client.R \
#       [grpc://127.0.0.1:8815] [API_KEY]

library(reticulate)

args <- commandArgs(trailingOnly = TRUE)
location <- if (length(args) >= 1) args[[1]] else "grpc://127.0.0.1:8815"
api_key <- if (length(args) >= 2) args[[2]] else ""

fl <- import("pyarrow.flight")
client <- fl$FlightClient(location)
options <- if (nzchar(api_key)) {
  fl$FlightCallOptions(headers = list(tuple("authorization", paste("Bearer", api_key))))
} else {
  fl$FlightCallOptions()
}

pa <- import("pyarrow")

# What reticulate has not converted already, converted.
r <- function(x) if (inherits(x, "python.builtin.object")) py_to_r(x) else x

# An Arrow table as an R data.frame, column by column (R has no decimal type: decimals become
# doubles; nulls become NA).
as_r_frame <- function(table) {
  columns <- list()
  for (name in r(table$column_names)) {
    column <- table$column(name)
    if (r(pa$types$is_decimal(column$type))) column <- column$cast(pa$float64())
    values <- r(column$to_pylist())
    columns[[name]] <- vapply(values, function(v) if (is.null(v)) NA else v,
                              FUN.VALUE = values[[which(!vapply(values, is.null, TRUE))[1]]])
  }
  as.data.frame(columns, stringsAsFactors = FALSE, check.names = FALSE)
}

read_ticket <- function(ticket) {
  as_r_frame(client$do_get(fl$Ticket(ticket), options)$read_all())
}

# Every exportable table (path descriptors).
tables <- c()
for (info in iterate(client$list_flights(options = options))) {
  path <- info$descriptor$path
  if (!is.null(path) && length(path) == 1) {
    part <- path[[1]]
    tables <- c(tables, if (is.raw(part)) rawToChar(part) else as.character(part))
  }
}
cat("tables:", paste(head(tables, 5), collapse = ", "), "...\n")

# A filtered export, compact ticket: long rock tracks, three columns.
tracks <- read_ticket("export:Track:milliseconds>300000&genreId=1:trackId,name,unitPrice")
cat(nrow(tracks), "long rock tracks; first:", tracks$name[[1]], "\n")
stopifnot(is.data.frame(tracks), all(names(tracks) == c("trackId", "name", "unitPrice")))

# The same through a JSON ticket with the GraphQL where input.
ticket <- '{"export": {"table": "Genre", "where": {"name": {"startsWith": "R"}}, "columns": ["name"]}}'
genres <- read_ticket(ticket)
cat("genres starting with R:", paste(genres$name, collapse = ", "), "\n")

# A GraphQL query answered as Arrow: nested objects arrive as structs (lists in R).
query <- '{"graphql": {"query": "{ albums(limit: 3) { title artist { name } } }"}}'
albums <- client$do_get(fl$Ticket(query), options)$read_all()
cat("albums:", albums$num_rows, "rows, columns", paste(albums$column_names, collapse = ", "), "\n")

if (requireNamespace("arrow", quietly = TRUE)) {
  # The arrow package takes the pyarrow table as its own Table.
  tbl <- arrow::as_arrow_table(albums)
  print(tbl)
} else {
  cat("(the arrow package is not installed: the pyarrow table was read through reticulate)\n")
}
