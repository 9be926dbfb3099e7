/**
 * `joinCluster`: several listener nodes share one fleet through NATS, each
 * agent connected to one node and reachable from all (client/cluster.ts).
 *
 * A separate entry point because it needs the optional dependency
 * `@nats-io/transport-node`, which loads only when a node joins; `listen`
 * alone (the main entry) never loads it.
 *
 * ```ts
 * import { listen } from "./mod.ts";
 * import { joinCluster } from "./cluster.ts";
 *
 * const listener = await listen({ port: 46340, cert, key, agents });
 * const cluster = await joinCluster(listener, { servers: "nats://10.0.0.2:4222", node: "listener-a" });
 * const web1 = await cluster.waitForAgent("web1"); // connected to this node or another
 * console.log((await web1.info()).hostname);
 * ```
 * @module
 */
export { Cluster, type ClusterEvent, type ClusterOptions, joinCluster } from "./client/cluster.ts";
export { ClusterError } from "./core/errors.ts";
