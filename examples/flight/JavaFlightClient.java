// Read Quiver's Arrow Flight server from Java (Arrow Java's flight-core).
//
// Dependencies (Maven): org.apache.arrow:flight-core and org.apache.arrow:arrow-memory-netty,
// the same version. Start a server (`quiver demo`), then:
//
//   javac -cp "$CLASSPATH" JavaFlightClient.java
//   java  -cp "$CLASSPATH:." --add-opens=java.base/java.nio=ALL-UNNAMED JavaFlightClient [API_KEY]
//
// This example is documentation: the tests run the Python client, not this one.

import java.nio.charset.StandardCharsets;

import org.apache.arrow.flight.CallHeaders;
import org.apache.arrow.flight.FlightCallHeaders;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.HeaderCallOption;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.Ticket;
import org.apache.arrow.flight.Criteria;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;

public class JavaFlightClient {
    public static void main(String[] args) throws Exception {
        CallHeaders headers = new FlightCallHeaders();
        if (args.length > 0) {
            headers.insert("authorization", "Bearer " + args[0]);
        }
        HeaderCallOption auth = new HeaderCallOption(headers);
        try (BufferAllocator allocator = new RootAllocator();
             FlightClient client = FlightClient.builder(allocator,
                     Location.forGrpcInsecure("127.0.0.1", 8815)).build()) {
            // Every exportable table with its schema.
            for (FlightInfo info : client.listFlights(Criteria.ALL, auth)) {
                System.out.println(info.getDescriptor().getPath() + ": " + info.getSchema());
            }
            // A bulk export: long rock tracks, three columns.
            String ticket = "export:Track:milliseconds>300000&genreId=1:trackId,name,unitPrice";
            long rows = 0;
            try (FlightStream stream = client.getStream(
                    new Ticket(ticket.getBytes(StandardCharsets.UTF_8)), auth)) {
                VectorSchemaRoot root = stream.getRoot();
                while (stream.next()) {
                    rows += root.getRowCount();
                }
            }
            System.out.println(rows + " long rock tracks");
        }
    }
}
