// Package report is the last step of the network stage: it tells OneGate
// how the boot went, and retries that later when OneGate was unreachable.
//
// With REPORT_READY=YES (exactly) the step runs the readiness check as
// one-context's net-99-report-ready does: READY_SCRIPT_PATH must exist and
// exit 0; else READY_SCRIPT (already base64-decoded) must succeed under
// /bin/sh -c; else the VM counts as ready. A failing check is run again,
// up to RETRY_COUNT tries (3) in all, RETRY_WAIT_PERIOD (10 s) apart; a
// missing READY_SCRIPT_PATH is not retried. Then it reads the run record:
//
//   - every required step succeeded (or skipped itself for a reason of its
//     own) and the check passed: it sets READY=YES and ONECONTEXT_STATUS,
//     and erases ONECONTEXT_ERROR when an earlier run left one;
//   - a required step failed or was blocked: it sets ONECONTEXT_ERROR and
//     ONECONTEXT_STATUS and erases a READY=YES an earlier run left, so
//     OneFlow's ready_status_gate does not pass a broken VM;
//   - the readiness check failed on every try: nothing is sent and the
//     step fails (as upstream: "Failed to report READY", exit 1).
//
// Attributes written to the VM's USER_TEMPLATE:
//
//	READY              YES; OneFlow's ready_status_gate waits for it (upstream name)
//	ONECONTEXT_ERROR   the failed steps and short reasons, "network: eth0: set mtu: ...; users: ..."
//	                   (secrets scrubbed; , [ ] \ " and line breaks replaced, since OneGate cannot
//	                   store them; at most 1 KiB). Our own convention, not upstream.
//	ONECONTEXT_STATUS  "ok one-contextd/<version> <RFC 3339 UTC time>" or "failed ..." likewise:
//	                   which agent reported what and when, so a stale ONECONTEXT_ERROR or READY
//	                   can be told from this boot's. Our own convention.
//
// OneGate outages do not fail or hold the boot: the step tries for a short
// while (Input.BriefTimeout, 15 s by default), then writes the report to
// PendingFile (attributes only: no token, no endpoint) and returns. The
// one-contextd-report timer runs `one-contextd report --retry` (RetryMain),
// which delivers it with capped exponential backoff, reading the endpoint,
// VM id and token from the agent's env file (EnvFile). A gate answering
// with a redirect is no outage: the redirect is not followed (nor is the
// token sent on), the step fails and the report is queued all the same.
package report
