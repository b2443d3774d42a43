// How a run's state is shown: "killed" for one recorded as running whose
// process is gone (the run store tells it with `process_gone`, as
// `rhizos flow runs` shows it), else its status.

export interface RunState {
  status: string;
  process_gone?: boolean;
}

export function shownState(r: RunState): string {
  return r.process_gone ? "killed" : r.status;
}

/** Still going: running, and not killed. */
export function going(r: RunState | null | undefined): boolean {
  return !!r && r.status === "running" && !r.process_gone;
}
