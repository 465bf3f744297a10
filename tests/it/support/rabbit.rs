//! The real RabbitMQ for the distributed mode's tests: [`TestBroker`]
//! gives each test its own name prefix (so tests running at once never
//! share a queue) and deletes that prefix's exchanges and queues when
//! dropped. A broker that cannot be reached fails the test and says how
//! to provide one; it never passes silently.

use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use super::db::rand_suffix;

/// The broker's URL: `TEST_AMQP_URL`, or the local RabbitMQ.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// One test's corner of the broker.
pub struct TestBroker {
    /// The URL to connect to.
    pub url: String,
    /// The `[distributed] prefix` of this test's exchanges and queues.
    pub prefix: String,
    /// Partitions the test's deployment uses.
    pub partitions: u32,
}

impl TestBroker {
    /// A fresh prefix on the broker at [`amqp_url`], checked reachable.
    pub async fn new(partitions: u32) -> TestBroker {
        let url = amqp_url();
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "RabbitMQ is not reachable at {url}: {e}. Start it (`rabbitmq-server -detached`, or run ./scripts/test, which does) or set TEST_AMQP_URL to a broker where guest may declare queues."
                )
            });
        let _ = conn.close(200, "checked".into()).await;
        TestBroker {
            url,
            prefix: format!("zt{}", rand_suffix()),
            partitions,
        }
    }

    /// A connection of the test's own.
    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ")
    }

    /// The `[distributed]` section of this test's deployment.
    pub fn section(&self) -> String {
        format!(
            "[distributed]\namqp_url = \"{}\"\npartitions = {}\nprefix = \"{}\"\nlease_seconds = 3\n",
            self.url, self.partitions, self.prefix
        )
    }

    /// Partition `k`'s queue.
    pub fn queue(&self, k: u32) -> String {
        format!("{}.partition.{k}", self.prefix)
    }

    /// Messages ready in `queue` (0 when it does not exist).
    pub async fn ready(&self, queue: &str) -> u32 {
        let conn = self.connect().await;
        let channel = conn.create_channel().await.expect("a channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let n = match channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(q) => q.message_count(),
            Err(_) => 0,
        };
        let _ = conn.close(200, "done".into()).await;
        n
    }

    /// Messages ready in every partition.
    pub async fn ready_in_partitions(&self) -> u32 {
        let mut n = 0;
        for k in 0..self.partitions {
            n += self.ready(&self.queue(k)).await;
        }
        n
    }

    async fn delete_all(url: String, prefix: String, partitions: u32) {
        let Ok(conn) = Connection::connect(&url, ConnectionProperties::default()).await else {
            return;
        };
        let mut queues: Vec<String> = (0..partitions)
            .map(|k| format!("{prefix}.partition.{k}"))
            .collect();
        queues.push(format!("{prefix}.dead"));
        for q in queues {
            // A failed delete closes the channel: one channel per delete.
            if let Ok(ch) = conn.create_channel().await {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for x in [format!("{prefix}.events"), format!("{prefix}.dlx")] {
            if let Ok(ch) = conn.create_channel().await {
                let _ = ch
                    .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            }
        }
        let _ = conn.close(200, "cleaned up".into()).await;
    }
}

/// One stored event as the ingest publishes it.
pub struct Produced<'a> {
    pub inbox_id: i64,
    pub event: &'a zulip_event_listeners::event::Event,
    pub partition: u32,
}

impl TestBroker {
    /// Declares the topology (as every role does: same arguments) and
    /// publishes each of `events` of organization `org` to
    /// `{prefix}.events` with its partition's routing key, the raw event
    /// JSON as body and the headers `Envelope::seal` writes; waits for
    /// every confirm.
    pub async fn publish(&self, org: &str, events: &[Produced<'_>]) {
        use lapin::options::{
            BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        };
        use lapin::types::{AMQPValue, LongString, ShortString};
        use lapin::{BasicProperties, ExchangeKind};
        let conn = self.connect().await;
        let ch = conn.create_channel().await.expect("a channel");
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let dlx = format!("{}.dlx", self.prefix);
        let exchange = format!("{}.events", self.prefix);
        ch.exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .expect("declare the DLX");
        ch.exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .expect("declare the exchange");
        let q = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let mut dead_args = FieldTable::default();
        dead_args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        let dead = format!("{}.dead", self.prefix);
        ch.queue_declare(dead.as_str().into(), q, dead_args)
            .await
            .expect("declare the dead queue");
        ch.queue_bind(
            dead.as_str().into(),
            dlx.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind the dead queue");
        for k in 0..self.partitions {
            let mut args = FieldTable::default();
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
            args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(20));
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(dlx.as_str().into()),
            );
            let queue = self.queue(k);
            ch.queue_declare(queue.as_str().into(), q, args)
                .await
                .expect("declare a partition");
            ch.queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                k.to_string().as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind a partition");
        }
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        for e in events {
            let mut headers = FieldTable::default();
            let mut put = |k: &str, v: AMQPValue| {
                headers.insert(ShortString::from(k), v);
            };
            put("zel-inbox-id", AMQPValue::LongLongInt(e.inbox_id));
            put("zel-event-id", AMQPValue::LongLongInt(e.event.id()));
            put(
                "zel-backfilled",
                AMQPValue::Boolean(e.event.is_backfilled()),
            );
            put(
                "zel-received-at-us",
                AMQPValue::LongLongInt(chrono::Utc::now().timestamp_micros()),
            );
            put("zel-org", AMQPValue::LongString(LongString::from(org)));
            put("zel-epoch", AMQPValue::LongLongInt(1));
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"))
                .with_message_id(ShortString::from(e.inbox_id.to_string()))
                .with_type(ShortString::from(e.event.event_type()))
                .with_headers(headers);
            ch.basic_publish(
                exchange.as_str().into(),
                e.partition.to_string().as_str().into(),
                BasicPublishOptions::default(),
                e.event.raw().as_bytes(),
                props,
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
        }
        let _ = conn.close(200, "published".into()).await;
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let (url, prefix, partitions) = (self.url.clone(), self.prefix.clone(), self.partitions);
        // Dropped inside a runtime: the deletes run on a thread of their own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(TestBroker::delete_all(url, prefix, partitions));
            }
        })
        .join();
    }
}
