/**
 * Appends side-effect lines to the file named by `DURO_TEST_SIDE_EFFECTS`, and counts them, so tests can tell how often code really ran.
 */

import { appendFileSync, existsSync, readFileSync } from "node:fs";

function sinkPath(): string | undefined {
  return process.env.DURO_TEST_SIDE_EFFECTS || undefined;
}

export function recordSideEffect(line: string): void {
  const path = sinkPath();
  if (path) {
    appendFileSync(path, line + "\n", "utf-8");
  }
}

export function countSideEffects(prefix: string): number {
  const path = sinkPath();
  if (!path || !existsSync(path)) {
    return 0;
  }
  return readFileSync(path, "utf-8")
    .split("\n")
    .filter((line) => line.length > 0 && line.startsWith(prefix)).length;
}
