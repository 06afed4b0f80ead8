# Read Quiver's Arrow Flight server from R (the arrow package's Flight client, which uses
# pyarrow through reticulate).
#
#   install.packages(c("arrow", "reticulate")); arrow::install_pyarrow()
#   quiver demo                      # in another terminal
#   Rscript examples/flight/r_flight_client.R
#
# This example is documentation: the tests run the Python client, not this one. With API keys,
# use quiver.flight.connect from Python through reticulate, which sends the header.

library(arrow)

client <- flight_connect(host = "127.0.0.1", port = 8815)

# flight_get() takes a path: the table's type name serves its whole export.
genres <- flight_get(client, "Genre")
print(as.data.frame(genres))

# A filtered export: the ticket is sent as it is written.
pa_flight <- reticulate::import("pyarrow.flight")
reader <- client$do_get(pa_flight$Ticket("export:Track:genreId=1:trackId,name"))
tracks <- reader$read_all()
cat(tracks$num_rows, "rock tracks\n")
