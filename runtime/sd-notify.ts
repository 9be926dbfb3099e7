/**
 * systemd's readiness protocol (sd_notify(3)): datagrams such as `READY=1` to the socket named by
 * NOTIFY_SOCKET, and `WATCHDOG=1` at half the interval in WATCHDOG_USEC, so a unit with `Type=notify` and
 * `WatchdogSec=` knows when the agent serves and restarts it when its event loop stops turning. Node has no
 * Unix datagram socket, so the datagram goes through the C library (runtime/native.ts). Outside systemd
 * (no NOTIFY_SOCKET) every call does nothing.
 *
 * @example
 * ```ts
 * const systemd = systemdNotifier(process.env);
 * systemd.notify("READY=1");
 * systemd.startWatchdog();
 * ```
 * @module
 */
import { bindC, libcName } from "./native.ts";

const AF_UNIX = 1, SOCK_DGRAM = 2, SOCK_CLOEXEC = 0o2000000, MSG_NOSIGNAL = 0x4000, MSG_DONTWAIT = 0x40;
const SUN_PATH_MAX = 108;

/** Sends states to systemd and keeps its watchdog fed. */
export interface SystemdNotifier {
  /** True when systemd asked for notifications (NOTIFY_SOCKET is set). */
  readonly enabled: boolean;
  /** Sends one or more `KEY=value` lines; false when it could not be sent. Never throws. */
  notify(state: string): boolean;
  /** Sends `WATCHDOG=1` at half of WATCHDOG_USEC while the event loop turns; does nothing without it. */
  startWatchdog(): void;
  /** Stops the watchdog timer. */
  stopWatchdog(): void;
}

/** `sockaddr_un` for `socket`: a path, or an abstract name written with a leading "@". */
function socketAddress(socket: string): Uint8Array | null {
  const name = new TextEncoder().encode(socket.startsWith("@") ? `\0${socket.slice(1)}` : socket);
  if (name.length === 0 || name.length >= SUN_PATH_MAX) return null;
  const address = new Uint8Array(2 + name.length + (socket.startsWith("@") ? 0 : 1));
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  address.set(name, 2);
  return address;
}

/** The watchdog interval systemd asked this process for, in ms, or null. */
export function watchdogIntervalMs(env: Record<string, string | undefined>, pid = process.pid): number | null {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return null;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return null; // meant for another process
  return usec / 1000;
}

/** A notifier for the systemd that started this process, as the environment names it. */
export function systemdNotifier(env: Record<string, string | undefined>): SystemdNotifier {
  const address = env.NOTIFY_SOCKET ? socketAddress(env.NOTIFY_SOCKET) : null;
  const intervalMs = watchdogIntervalMs(env);
  let libc: Record<"socket" | "sendto" | "close", (...a: unknown[]) => unknown> | null = null;
  let timer: ReturnType<typeof setInterval> | null = null;
  const notify = (state: string): boolean => {
    if (!address) return false;
    try {
      libc ??= bindC(libcName(), {
        socket: "int socket(int domain, int type, int protocol)",
        sendto: "int sendto(int fd, const uint8_t *buf, size_t len, int flags, const uint8_t *addr, unsigned int n)",
        close: "int close(int fd)",
      });
      const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
      if (fd < 0) return false;
      const bytes = new TextEncoder().encode(state);
      // Never wait for the reader: a full queue (a stalled systemd) must not stop the event loop. The
      // watchdog's next beat, or systemd's own timeout, tells the story of a dropped message.
      const flags = MSG_NOSIGNAL | MSG_DONTWAIT;
      const sent = libc.sendto(fd, bytes, bytes.length, flags, address, address.length) as number;
      libc.close(fd);
      return sent === bytes.length;
    } catch {
      return false; // no FFI here: systemd then sees no readiness, which its timeout reports
    }
  };
  return {
    enabled: address !== null,
    notify,
    startWatchdog() {
      if (!address || intervalMs === null || timer) return;
      notify("WATCHDOG=1");
      timer = setInterval(() => notify("WATCHDOG=1"), Math.max(50, intervalMs / 2));
      (timer as { unref?: () => void }).unref?.();
    },
    stopWatchdog() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
