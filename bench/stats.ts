/** Small helpers for benchmarks: percentiles and table printing. */

/** Sorted copy's value at quantile q (0..1). */
export function quantile(samples: number[], q: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

export function median(samples: number[]): number {
  return quantile(samples, 0.5);
}

/** Prints rows as an aligned table. */
export function table(rows: string[][]): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) {
    console.log("  " + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  "));
  }
}

export const us = (ms: number) => `${(ms * 1000).toFixed(0)} µs`;
export const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
