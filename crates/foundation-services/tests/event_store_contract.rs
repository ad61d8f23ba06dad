//! The EventStore contract: one suite, run against both backends (the
//! embedded SQLite store and PostgreSQL, each test on a fresh directory
//! or schema). It is the store's semantics as the `event_store` module
//! docs state them: ids and stream versions, expected versions,
//! idempotency keys and retried batches, all-or-nothing batches within a
//! commit group, queries, causation chains, subscriptions (stored then
//! live, no gap and no duplicate), retention, the horizon and
//! `Compacted`, durability across a reopen.
//!
//! What only one backend can show lives beside it: the SQLite file's
//! checks in `event_store_files.rs`, PostgreSQL's faults in
//! `event_store_postgres.rs`.

mod support;

#[path = "event_store_contract/append.rs"]
mod append;
#[path = "event_store_contract/batches.rs"]
mod batches;
#[path = "event_store_contract/horizon.rs"]
mod horizon;
#[path = "event_store_contract/query.rs"]
mod query;
#[path = "event_store_contract/subscribe.rs"]
mod subscribe;

contract! {
    crate::append::appended_events_come_back_with_ids_versions_and_fields => appended_events_come_back_with_ids_versions_and_fields,
    crate::append::get_of_an_unknown_id_is_not_found_with_a_stable_code => get_of_an_unknown_id_is_not_found_with_a_stable_code,
    crate::append::expected_version_conflicts_when_the_stream_moved_on => expected_version_conflicts_when_the_stream_moved_on,
    crate::append::of_concurrent_appends_expecting_one_version_exactly_one_wins => of_concurrent_appends_expecting_one_version_exactly_one_wins,
    crate::append::a_batch_with_one_invalid_event_writes_nothing => a_batch_with_one_invalid_event_writes_nothing,
    crate::append::a_batch_failing_in_the_writer_is_rolled_back_alone => a_batch_failing_in_the_writer_is_rolled_back_alone,
    crate::append::an_idempotency_key_stores_a_retried_append_once => an_idempotency_key_stores_a_retried_append_once,
    crate::append::one_key_queued_twice_together_is_stored_once => one_key_queued_twice_together_is_stored_once,
    crate::append::bad_events_are_refused_with_typed_errors => bad_events_are_refused_with_typed_errors,
    crate::append::the_store_is_an_event_sink => the_store_is_an_event_sink,
    crate::append::queued_appends_are_durable_when_the_last_is_acknowledged => queued_appends_are_durable_when_the_last_is_acknowledged,
    crate::batches::a_retried_batch_is_answered_whole_and_writes_nothing => a_retried_batch_is_answered_whole_and_writes_nothing,
    crate::batches::another_batch_with_a_stored_key_is_checked_like_any_other => another_batch_with_a_stored_key_is_checked_like_any_other,
    crate::batches::a_batch_failing_after_its_first_insert_is_rolled_back_alone_in_its_group => a_batch_failing_after_its_first_insert_is_rolled_back_alone_in_its_group,
    crate::query::queries_filter_by_stream_kind_time_and_correlation => queries_filter_by_stream_kind_time_and_correlation,
    crate::query::queries_order_offset_and_limit => queries_order_offset_and_limit,
    crate::query::the_causation_chain_runs_from_the_root_to_the_event => the_causation_chain_runs_from_the_root_to_the_event,
    crate::query::prune_before_deletes_old_events_and_ids_are_never_reused => prune_before_deletes_old_events_and_ids_are_never_reused,
    crate::query::stats_count_events_streams_and_commits => stats_count_events_streams_and_commits,
    crate::query::the_store_is_an_event_reader => the_store_is_an_event_reader,
    crate::subscribe::a_subscriber_gets_stored_events_then_live_ones => a_subscriber_gets_stored_events_then_live_ones,
    crate::subscribe::no_gap_and_no_duplicate_across_the_hand_over => no_gap_and_no_duplicate_across_the_hand_over,
    crate::subscribe::a_subscription_ends_when_the_store_stops => a_subscription_ends_when_the_store_stops,
    crate::horizon::reads_and_subscriptions_below_the_horizon_are_compacted => reads_and_subscriptions_below_the_horizon_are_compacted,
    crate::horizon::retention_prunes_by_age_and_count_and_reports_each_prune => retention_prunes_by_age_and_count_and_reports_each_prune,
    crate::horizon::the_store_prunes_by_itself => the_store_prunes_by_itself,
    crate::horizon::a_large_backlog_is_pruned_in_steps => a_large_backlog_is_pruned_in_steps,
}
