//! The gateway's batching (docs/sharding.md §3.3) over a fake transport: the test sees each
//! request the driver sends and answers it (or breaks it) when it chooses. On tokio's
//! current-thread runtime the driver runs only while the test awaits, so what is queued before
//! a batch is sent is exactly what the test queued before yielding.

use super::*;

/// A request the driver sent, and where its reply goes (dropped: the stream broke).
struct Sent {
    commit_count: u32,
    want_read: bool,
    reply: oneshot::Sender<Option<pb::TimestampReply>>,
}

impl Sent {
    fn grant(self, first: u64, count: u32, read_version: Option<u64>) {
        let reply = wire::timestamp_reply_to_pb(
            0,
            &Ok(VersionGrant {
                first,
                count,
                read_version,
            }),
        );
        let _ = self.reply.send(Some(reply));
    }

    /// The range the request asked for, from `first` (the read version one below it).
    fn grant_asked(self, first: u64) {
        let (count, read) = (self.commit_count, self.want_read.then(|| first - 1));
        self.grant(first, count, read);
    }
}

/// Sends every request to the test; `refuse` makes the next one fail as not sent.
struct Fake {
    sent: mpsc::UnboundedSender<Sent>,
    refuse: Arc<Mutex<Option<ProposeError>>>,
}

impl Transport for Fake {
    async fn request(
        &mut self,
        commit_count: u32,
        want_read: bool,
    ) -> Result<ReplySlot, ProposeError> {
        if let Some(e) = self.refuse.lock().take() {
            return Err(e);
        }
        let (reply, answer) = oneshot::channel();
        let _ = self.sent.send(Sent {
            commit_count,
            want_read,
            reply,
        });
        Ok(answer)
    }
}

type Answer = oneshot::Receiver<Result<VersionGrant, ProposeError>>;

struct Rig {
    queue: mpsc::Sender<Ask>,
    sent: mpsc::UnboundedReceiver<Sent>,
    refuse: Arc<Mutex<Option<ProposeError>>>,
    counters: Arc<Counters>,
}

impl Rig {
    fn start() -> Self {
        let (queue, asks) = mpsc::channel(64);
        let (sent_tx, sent) = mpsc::unbounded_channel();
        let refuse = Arc::new(Mutex::new(None));
        let counters = Arc::new(Counters::default());
        let driver = Driver {
            to: 1,
            addr: "fake".into(),
            counters: Arc::clone(&counters),
            transport: Fake {
                sent: sent_tx,
                refuse: Arc::clone(&refuse),
            },
        };
        tokio::spawn(driver.run(asks));
        Self {
            queue,
            sent,
            refuse,
            counters,
        }
    }

    /// Queues a caller (it is in the queue when this returns).
    fn ask(&self, commit_count: u32, want_read: bool) -> Answer {
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            commit_count,
            want_read,
            reply,
        };
        assert!(self.queue.try_send(ask).is_ok(), "the queue has room");
        answer
    }

    /// Lets the driver run until it waits again.
    async fn settle() {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }

    /// The requests sent so far and not yet taken.
    async fn sent(&mut self) -> Vec<Sent> {
        Self::settle().await;
        let mut sent = Vec::new();
        while let Ok(s) = self.sent.try_recv() {
            sent.push(s);
        }
        sent
    }
}

fn range(first: u64, count: u32, read_version: Option<u64>) -> VersionGrant {
    VersionGrant {
        first,
        count,
        read_version,
    }
}

async fn answered(answer: Answer) -> Result<VersionGrant, ProposeError> {
    answer.await.expect("every caller is answered")
}

#[tokio::test]
async fn one_batch_is_split_among_its_callers_in_queue_order() {
    let mut rig = Rig::start();
    let a = rig.ask(2, false);
    let b = rig.ask(0, true);
    let c = rig.ask(3, true);
    let mut sent = rig.sent().await;
    assert_eq!(sent.len(), 1, "three callers queued together: one request");
    let request = sent.remove(0);
    assert_eq!((request.commit_count, request.want_read), (5, true));
    request.grant(100, 5, Some(99));
    assert_eq!(answered(a).await, Ok(range(100, 2, None)));
    assert_eq!(answered(b).await, Ok(range(102, 0, Some(99))));
    assert_eq!(answered(c).await, Ok(range(102, 3, Some(99))));
    let counters = &rig.counters;
    assert_eq!(counters.batches.load(Ordering::Relaxed), 1);
    assert_eq!(counters.callers.load(Ordering::Relaxed), 3);
    assert_eq!(counters.versions.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn two_batches_in_flight_and_later_callers_wait_for_a_batch_of_their_own() {
    let mut rig = Rig::start();
    let first = rig.ask(1, true);
    let sent_first = rig.sent().await;
    let second = rig.ask(1, false);
    let sent_second = rig.sent().await;
    assert_eq!((sent_first.len(), sent_second.len()), (1, 1));
    // Two in flight: these two queue, and nothing goes until one is answered.
    let third = rig.ask(1, true);
    let fourth = rig.ask(2, false);
    assert!(rig.sent().await.is_empty(), "never more than two in flight");

    // The first batch's answer serves its caller only, never the two queued after it was sent.
    let mut sent_first = sent_first;
    sent_first.remove(0).grant(10, 1, Some(9));
    assert_eq!(answered(first).await, Ok(range(10, 1, Some(9))));
    let mut third_batch = rig.sent().await;
    assert_eq!(
        third_batch.len(),
        1,
        "the queued callers go together once one is answered"
    );
    let third_batch = third_batch.remove(0);
    assert_eq!((third_batch.commit_count, third_batch.want_read), (3, true));

    // A grant larger than asked is refused, never handed on to later callers.
    let mut sent_second = sent_second;
    sent_second.remove(0).grant(20, 2, None);
    let err = answered(second)
        .await
        .expect_err("a grant larger than asked");
    assert!(matches!(err, ProposeError::Unavailable(_)), "{err:?}");

    third_batch.grant(30, 3, Some(29));
    assert_eq!(answered(third).await, Ok(range(30, 1, Some(29))));
    assert_eq!(answered(fourth).await, Ok(range(31, 2, None)));
}

#[tokio::test]
async fn a_caller_that_gave_up_before_its_batch_was_sent_is_withdrawn() {
    let mut rig = Rig::start();
    let first = rig.ask(1, false);
    let second = rig.ask(1, false);
    let mut in_flight = rig.sent().await;
    let _also_in_flight = rig.ask(1, false);
    in_flight.extend(rig.sent().await);
    assert_eq!(in_flight.len(), 2);
    let gave_up = rig.ask(5, false);
    let stays = rig.ask(1, true);
    drop(gave_up);
    in_flight.remove(0).grant_asked(10);
    assert_eq!(answered(first).await, Ok(range(10, 1, None)));
    assert_eq!(answered(second).await, Ok(range(11, 1, None)));
    let mut next = rig.sent().await;
    assert_eq!(next.len(), 1);
    let next = next.remove(0);
    assert_eq!((next.commit_count, next.want_read), (1, true));
    next.grant_asked(50);
    assert_eq!(answered(stays).await, Ok(range(50, 1, Some(49))));
}

#[tokio::test]
async fn a_broken_stream_answers_its_callers_unavailable_and_the_next_call_is_sent_again() {
    let mut rig = Rig::start();
    let lost = rig.ask(3, true);
    let mut sent = rig.sent().await;
    // The stream breaks before the answer: the reply slot is dropped.
    drop(sent.remove(0));
    let err = answered(lost).await.expect_err("the stream broke");
    let ProposeError::Unavailable(message) = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("burned") && message.contains("nothing was committed"),
        "{message}"
    );

    // Not sent at all (no connection): the caller gets why.
    *rig.refuse.lock() = Some(ProposeError::LeaderUnreachable("not connected".into()));
    let refused = rig.ask(1, false);
    assert_eq!(
        answered(refused).await,
        Err(ProposeError::LeaderUnreachable("not connected".into()))
    );

    let again = rig.ask(1, false);
    let mut sent = rig.sent().await;
    assert_eq!(sent.len(), 1);
    sent.remove(0).grant_asked(70);
    assert_eq!(answered(again).await, Ok(range(70, 1, None)));
}

#[tokio::test]
async fn a_refusal_reaches_every_caller_of_the_batch() {
    let mut rig = Rig::start();
    let a = rig.ask(1, false);
    let b = rig.ask(0, true);
    let mut sent = rig.sent().await;
    let hint = ProposeError::NotLeader {
        leader_id: Some(2),
        leader_addr: Some("127.0.0.1:7102".into()),
    };
    let reply = wire::timestamp_reply_to_pb(0, &Err(hint.clone()));
    let _ = sent.remove(0).reply.send(Some(reply));
    assert_eq!(answered(a).await, Err(hint.clone()));
    assert_eq!(answered(b).await, Err(hint));
}

#[test]
fn a_batch_stops_at_the_version_cap_but_takes_its_first_caller_whatever_it_asks() {
    let asks = |counts: &[u32]| -> Vec<Ask> {
        counts
            .iter()
            .map(|&commit_count| Ask {
                commit_count,
                want_read: false,
                reply: oneshot::channel().0,
            })
            .collect()
    };
    let cap = u32::try_from(MAX_BATCH_VERSIONS).expect("fits");
    let mut queued = asks(&[cap - 1, 1, 1]);
    assert_eq!(take_batch(&mut queued).len(), 2);
    assert_eq!(queued.len(), 1);
    let mut queued = asks(&[cap + 5, 1]);
    assert_eq!(take_batch(&mut queued).len(), 1);
    assert_eq!(take_batch(&mut queued).len(), 1);
    assert!(queued.is_empty());
}
