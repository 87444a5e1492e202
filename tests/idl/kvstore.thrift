// The TransactionalKV contract exactly as existing (pre-Dolmen) clients have it (docs/WIRE.md §2).
// The black-box suite generates its Apache Thrift client from this file, so it proves that
// Dolmen serves clients built from the original IDL. Regenerate with `make thrift-gen`.
namespace rs kvstore

struct KeyValue {
  1: required binary key,
  2: required binary value,
}

struct Operation {
  1: required string type,
  2: required binary key,
  3: optional binary value,
  4: optional string column_family,
}

struct NodeStatus {
  1: required i32 node_id,
  2: required string endpoint,
  3: required string status,
  4: required bool is_leader,
  5: required i64 last_seen_timestamp,
  6: required i64 term,
  7: optional i64 uptime_seconds,
}

struct ClusterHealth {
  1: required list<NodeStatus> nodes,
  2: required i32 healthy_nodes_count,
  3: required i32 total_nodes_count,
  4: optional NodeStatus leader,
  5: required string cluster_status,
  6: required i64 current_term,
}

struct DatabaseStats {
  1: required i64 total_keys,
  2: required i64 total_size_bytes,
  3: required i64 write_operations_count,
  4: required i64 read_operations_count,
  5: required double average_response_time_ms,
  6: required i64 active_transactions,
  7: required i64 committed_transactions,
  8: required i64 aborted_transactions,
  9: optional i64 cache_hit_rate_percent,
  10: optional i64 compaction_pending_bytes,
}

struct GetReadVersionRequest {}
struct GetReadVersionResponse { 1: required i64 read_version, 2: required bool success, 3: optional string error }

struct SnapshotReadRequest { 1: required binary key, 2: required i64 read_version, 3: optional string column_family }
struct SnapshotReadResponse { 1: required binary value, 2: required bool found, 3: optional string error }

struct AtomicCommitRequest {
  1: required i64 read_version,
  2: required list<Operation> operations,
  3: required list<binary> read_conflict_keys,
  4: optional i64 timeout_seconds,
}
struct AtomicCommitResponse {
  1: required bool success,
  2: optional string error,
  3: optional string error_code,
  4: optional i64 committed_version,
}

struct GetRequest { 1: required binary key, 2: optional string column_family }
struct GetResponse { 1: required binary value, 2: required bool found, 3: optional string error }

struct SetKeyRequest { 1: required binary key, 2: required binary value, 3: optional string column_family }
struct SetKeyResponse { 1: required bool success, 2: optional string error, 3: optional string error_code }

struct DeleteKeyRequest { 1: required binary key, 2: optional string column_family }
struct DeleteKeyResponse { 1: required bool success, 2: optional string error, 3: optional string error_code }

struct GetRangeRequest {
  1: optional binary begin_key,
  2: optional binary end_key,
  3: optional i32 begin_offset,
  4: optional bool begin_or_equal,
  5: optional i32 end_offset,
  6: optional bool end_or_equal,
  7: optional i32 limit,
  8: optional string column_family,
}
struct GetRangeResponse {
  1: required list<KeyValue> key_values,
  2: required bool success,
  3: optional string error,
  4: required bool has_more,
}

struct SnapshotGetRangeRequest {
  1: optional binary begin_key,
  2: optional binary end_key,
  3: optional i32 begin_offset,
  4: optional bool begin_or_equal,
  5: optional i32 end_offset,
  6: optional bool end_or_equal,
  7: required i64 read_version,
  8: optional i32 limit,
  9: optional string column_family,
}

struct AddReadConflictRequest { 1: required binary key, 2: optional string column_family }
struct AddReadConflictResponse { 1: required bool success, 2: optional string error }

struct AddReadConflictRangeRequest { 1: required binary start_key, 2: required binary end_key, 3: optional string column_family }
struct AddReadConflictRangeResponse { 1: required bool success, 2: optional string error }

struct SetReadVersionRequest { 1: required i64 version }
struct SetReadVersionResponse { 1: required bool success, 2: optional string error }

struct GetCommittedVersionRequest {}
struct GetCommittedVersionResponse { 1: required i64 version, 2: required bool success, 3: optional string error }

struct SetVersionstampedKeyRequest { 1: required binary key_prefix, 2: required binary value, 3: optional string column_family }
struct SetVersionstampedKeyResponse { 1: required binary generated_key, 2: required bool success, 3: optional string error }

struct SetVersionstampedValueRequest { 1: required binary key, 2: required binary value_prefix, 3: optional string column_family }
struct SetVersionstampedValueResponse { 1: required binary generated_value, 2: required bool success, 3: optional string error }

struct FaultInjectionRequest {
  1: required string fault_type,
  2: optional double probability,
  3: optional i32 duration_ms,
  4: optional string target_operation,
}
struct FaultInjectionResponse { 1: required bool success, 2: optional string error }

struct PingRequest { 1: optional binary message, 2: optional i64 timestamp }
struct PingResponse { 1: required binary message, 2: required i64 timestamp, 3: required i64 server_timestamp }

struct GetClusterHealthRequest { 1: optional string auth_token }
struct GetClusterHealthResponse { 1: required bool success, 2: optional ClusterHealth cluster_health, 3: optional string error }

struct GetDatabaseStatsRequest { 1: optional string auth_token, 2: optional bool include_detailed_stats }
struct GetDatabaseStatsResponse { 1: required bool success, 2: optional DatabaseStats database_stats, 3: optional string error }

struct GetNodeInfoRequest { 1: optional string auth_token, 2: optional i32 node_id }
struct GetNodeInfoResponse { 1: required bool success, 2: optional NodeStatus node_info, 3: optional string error }

service TransactionalKV {
  GetReadVersionResponse getReadVersion(1: GetReadVersionRequest request),
  SnapshotReadResponse snapshotRead(1: SnapshotReadRequest request),
  AtomicCommitResponse atomicCommit(1: AtomicCommitRequest request),
  GetResponse get(1: GetRequest request),
  SetKeyResponse setKey(1: SetKeyRequest request),
  DeleteKeyResponse deleteKey(1: DeleteKeyRequest request),
  GetRangeResponse getRange(1: GetRangeRequest request),
  SnapshotReadResponse snapshotGet(1: SnapshotReadRequest request),
  GetRangeResponse snapshotGetRange(1: SnapshotGetRangeRequest request),
  AddReadConflictResponse addReadConflict(1: AddReadConflictRequest request),
  AddReadConflictRangeResponse addReadConflictRange(1: AddReadConflictRangeRequest request),
  SetReadVersionResponse setReadVersion(1: SetReadVersionRequest request),
  GetCommittedVersionResponse getCommittedVersion(1: GetCommittedVersionRequest request),
  SetVersionstampedKeyResponse setVersionstampedKey(1: SetVersionstampedKeyRequest request),
  SetVersionstampedValueResponse setVersionstampedValue(1: SetVersionstampedValueRequest request),
  FaultInjectionResponse setFaultInjection(1: FaultInjectionRequest request),
  PingResponse ping(1: PingRequest request),
  GetClusterHealthResponse getClusterHealth(1: GetClusterHealthRequest request),
  GetDatabaseStatsResponse getDatabaseStats(1: GetDatabaseStatsRequest request),
  GetNodeInfoResponse getNodeInfo(1: GetNodeInfoRequest request),
}
