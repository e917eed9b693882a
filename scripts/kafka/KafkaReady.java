// Readiness probe used by scripts/kafka/kafka.sh when no Python with aiokafka
// is at hand: exits 0 once a metadata request (describeCluster + listTopics)
// against the given bootstrap servers succeeds, 1 otherwise.
// Usage: java -cp '.cache/kafka/libs/*:<classes>' KafkaReady 127.0.0.1:9092
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

public class KafkaReady {
    public static void main(String[] args) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "4000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "6000");
        props.put(AdminClientConfig.RETRIES_CONFIG, "0");
        try (Admin admin = Admin.create(props)) {
            int nodes = admin.describeCluster().nodes().get(6, TimeUnit.SECONDS).size();
            int topics = admin.listTopics().names().get(6, TimeUnit.SECONDS).size();
            System.out.println("metadata ok: " + nodes + " broker(s), " + topics + " topic(s)");
            System.exit(0);
        } catch (Exception e) {
            System.err.println("metadata request failed: " + e);
            System.exit(1);
        }
    }
}
