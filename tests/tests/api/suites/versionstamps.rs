//! Versionstamped keys and values: the 10-byte layout, uniqueness and order, inside
//! atomicCommit too.

use dolmen_tests::client::{op, op_set};
use dolmen_tests::kvstore::{
    SetVersionstampedKeyRequest, SetVersionstampedValueRequest, TTransactionalKVSyncClient,
};
use dolmen_tests::raw::show;
use dolmen_tests::{Connector, KvExt, TestCluster};

use crate::helpers::{
    assert_found, assert_missing, assert_nonempty_error, fresh_ns, key, parse_stamp, reply, stamp,
};

/// Versionstamps: 8-byte BE commit version ‖ 2-byte BE order, replacing the buffer's last 10
/// bytes; unique and increasing; the same layout inside atomicCommit.
pub(crate) fn suite_versionstamps(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("vs");
    let placeholder = b"\xAA\xAA\xAA\xAA\xAA\xAA\xAA\xAA\xAA\xAA";

    // setVersionstampedKey
    let prefix = [key(&ns, b"key/").as_slice(), placeholder].concat();
    let mut previous: Option<Vec<u8>> = None;
    for value in [b"val1".as_slice(), b"val2".as_slice()] {
        let before = kv.read_version();
        let r = reply(
            "setVersionstampedKey",
            kv.set_versionstamped_key(SetVersionstampedKeyRequest::new(
                prefix.clone(),
                value.to_vec(),
                None,
            )),
        );
        assert!(
            r.success && r.error.is_none(),
            "expected setVersionstampedKey success: {r:?}"
        );
        let gk = r.generated_key;
        assert_eq!(
            gk.len(),
            prefix.len(),
            "expected generated_key as long as the prefix"
        );
        assert_eq!(
            gk[..gk.len() - 10],
            prefix[..prefix.len() - 10],
            "expected generated_key to keep all but the last 10 bytes of the prefix"
        );
        let st = gk[gk.len() - 10..].to_vec();
        let (version, order) = parse_stamp(&st);
        let after = kv.read_version();
        assert!(
            before < version && version <= after,
            "expected stamp version {version} in ({before}, {after}]"
        );
        assert_eq!(order, 0, "expected order 0 in a one-operation commit");
        assert_found(&mut kv, &gk, value);
        if let Some(p) = previous {
            assert!(
                st > p,
                "expected stamps increasing: {} then {}",
                show(&p),
                show(&st)
            );
        }
        previous = Some(st);
    }

    // Exactly 10 bytes: the key is the stamp.
    let r = reply(
        "setVersionstampedKey",
        kv.set_versionstamped_key(SetVersionstampedKeyRequest::new(
            placeholder.to_vec(),
            b"bare".to_vec(),
            None,
        )),
    );
    assert!(
        r.success && r.generated_key.len() == 10,
        "expected a bare 10-byte stamp key: {r:?}"
    );
    assert_found(&mut kv, &r.generated_key, b"bare");

    // setVersionstampedValue
    let vk = key(&ns, b"value");
    let vprefix = [b"hdr:".as_slice(), placeholder].concat();
    let mut previous: Option<Vec<u8>> = None;
    for _ in 0..2 {
        let before = kv.read_version();
        let r = reply(
            "setVersionstampedValue",
            kv.set_versionstamped_value(SetVersionstampedValueRequest::new(
                vk.clone(),
                vprefix.clone(),
                None,
            )),
        );
        assert!(
            r.success && r.error.is_none(),
            "expected setVersionstampedValue success: {r:?}"
        );
        let gv = r.generated_value;
        assert_eq!(
            gv.len(),
            vprefix.len(),
            "expected generated_value as long as the prefix"
        );
        assert_eq!(
            &gv[..4],
            b"hdr:",
            "expected generated_value to keep the prefix head"
        );
        let st = gv[4..].to_vec();
        let (version, order) = parse_stamp(&st);
        let after = kv.read_version();
        assert!(
            before < version && version <= after,
            "expected stamp version {version} in ({before}, {after}]"
        );
        assert_eq!(order, 0, "expected order 0 in a one-operation commit");
        assert_found(&mut kv, &vk, &gv);
        if let Some(p) = previous {
            assert!(
                st > p,
                "expected stamps increasing: {} then {}",
                show(&p),
                show(&st)
            );
        }
        previous = Some(st);
    }

    // Short buffers are refused.
    let r = reply(
        "setVersionstampedKey",
        kv.set_versionstamped_key(SetVersionstampedKeyRequest::new(
            b"123456789".to_vec(),
            b"v".to_vec(),
            None,
        )),
    );
    assert!(
        !r.success,
        "expected setVersionstampedKey with a 9-byte prefix to fail: {r:?}"
    );
    assert_nonempty_error(&r.error, "setVersionstampedKey with a 9-byte prefix");
    let short = key(&ns, b"short");
    let r = reply(
        "setVersionstampedValue",
        kv.set_versionstamped_value(SetVersionstampedValueRequest::new(
            short.clone(),
            b"123456789".to_vec(),
            None,
        )),
    );
    assert!(
        !r.success,
        "expected setVersionstampedValue with a 9-byte prefix to fail: {r:?}"
    );
    assert_nonempty_error(&r.error, "setVersionstampedValue with a 9-byte prefix");
    assert_missing(&mut kv, &short);

    // Inside atomicCommit, operation i is stamped committed_version ‖ i.
    let plain = key(&ns, b"plain");
    let p1 = [key(&ns, b"op1/").as_slice(), placeholder].concat();
    let k2 = key(&ns, b"op2");
    let v2 = [b"v2:".as_slice(), placeholder].concat();
    let p3 = [key(&ns, b"op3/").as_slice(), placeholder].concat();
    let rv = kv.read_version();
    let cv = kv.must_commit(
        rv,
        vec![
            op_set(&plain, b"p"),
            op("SET_VERSIONSTAMPED_KEY", &p1, Some(b"one"), None),
            op("SET_VERSIONSTAMPED_VALUE", &k2, Some(&v2), None),
            op("SET_VERSIONSTAMPED_KEY", &p3, Some(b"three"), None),
        ],
        vec![],
    );
    let key1 = [&p1[..p1.len() - 10], &stamp(cv, 1)].concat();
    let val2 = [&v2[..v2.len() - 10], &stamp(cv, 2)].concat();
    let key3 = [&p3[..p3.len() - 10], &stamp(cv, 3)].concat();
    assert_found(&mut kv, &plain, b"p");
    assert_found(&mut kv, &key1, b"one");
    assert_found(&mut kv, &k2, &val2);
    assert_found(&mut kv, &key3, b"three");
}
