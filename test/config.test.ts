// The config file's schema (agent/config-schema.ts): every error names the file, the setting, what it held and what is allowed.
// And resolveConfig (agent/config.ts): options as a command line gives them.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { resolveConfig, transferWindowNote } from "../agent/config.ts";
import { parseConfigFile } from "../agent/config-schema.ts";
import { ConfigError } from "../runtime/errors.ts";
import { keyHasRight, loadAgentKeys, readKeyFile } from "../agent/keystore.ts";
import { resolveProductUsers } from "../agent/product-users.ts";
import { generateKey } from "../core/secure/keys.ts";

const test = suite("config");

const FILE = "/etc/agent/config.json";
const error = (text: string) => {
  try {
    parseConfigFile(FILE, text);
  } catch (e) {
    assert.instance(e, ConfigError);
    return (e as Error).message;
  }
  throw new Error(`accepted: ${text}`);
};

test('"insecure": "false" is refused, not taken as true', () => {
  assert.is(
    error('{ "insecure": "false" }'),
    `config file ${FILE}: setting "insecure" is "false" (a string); allowed: true or false (a JSON boolean, not a string)`,
  );
});

test('"host": 5 is refused, not taken as all addresses', () => {
  assert.match(error('{ "host": 5 }'), /setting "host" is 5 \(a number\); allowed: an address or host name/);
});

test("numbers out of range, bad keys, bad product names and bad connect entries name the setting", () => {
  assert.match(error('{ "port": 70000 }'), /"port" is 70000 .*whole number from 0 to 65535/);
  assert.match(error('{ "idleTimeoutSeconds": -1 }'), /"idleTimeoutSeconds" is -1 .*positive number of seconds/);
  assert.match(error('{ "keys": ["abc"] }'), /"keys" \(at 0\) is "abc" .*64 hex digits/);
  assert.match(error('{ "products": ["Build Master"] }'), /"products" \(at 0\) .*product names/);
  assert.match(error('{ "connect": [{ "address": "nohost" }] }'), /"connect" \(at 0.address\) is "nohost"/);
  assert.match(error('{ "logFormat": "xml" }'), /"logFormat" is "xml" .*"text", "journal", "json"/);
});

test("an unknown setting, a non-object and broken JSON say so", () => {
  assert.match(error('{ "prot": 1 }'), /unknown setting "prot" \(did you mean "port"\?\)$/);
  assert.match(error('{ "zebra": 1 }'), /unknown setting "zebra" \(known: host, port,/);
  assert.match(error("[1, 2]"), /must hold a JSON object of settings, not \[1,2\] \(a list\)/);
  assert.match(error("{ port: 1 }"), /is not valid JSON/);
});

test("a good file parses to its settings", () => {
  const s = parseConfigFile(
    FILE,
    '{ "port": 4000, "insecure": false, "connect": ["p.example.com:46340", { "address": "[::1]:1", "ca": "ca.pem" }] }',
  );
  assert.equal(s, {
    port: 4000,
    insecure: false,
    connect: ["p.example.com:46340", { address: "[::1]:1", ca: "ca.pem" }],
  });
});

test("the transfer window stays within the replay bound: a default follows it down, a larger setting is noted", () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-config-"));
  const withFile = (settings: Record<string, unknown>) => {
    fs.writeFileSync(path.join(stateDir, "config.json"), JSON.stringify(settings));
    return resolveConfig({ stateDir }, {});
  };
  try {
    assert.is(withFile({ replayLimitMiB: 4 }).transferWindowMiB, 4);
    assert.is(withFile({}).transferWindowMiB, 15);
    assert.is(transferWindowNote(withFile({})), null);
    // Above the bound it still starts (a reload or an upgrade must not fail on it), and says what it does instead.
    assert.is(
      transferWindowNote(withFile({ replayLimitMiB: 4, transferWindowMiB: 8 })),
      "transferWindowMiB (8) is above replayLimitMiB (4): transfers keep at most 4 MiB in flight (a download keeps its whole window unacknowledged)",
    );
    assert.throws(
      () => withFile({ replayLimitMiB: 0.5 }),
      (e: Error) => e instanceof ConfigError && /replayLimitMiB must be at least 1, not 0.5/.test(e.message),
    );
  } finally {
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});

test("options as a command line gives them: the last of a repeated value wins, a list keeps them all", () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-config-"));
  try {
    const config = resolveConfig({ stateDir, port: ["4000", "4001"], product: ["a", "b"], insecure: true }, {});
    assert.is(config.port, 4001);
    assert.equal(config.products, ["a", "b"]);
    assert.is(config.stateDir, stateDir);
    assert.is(config.configFile, null, "no config.json in the state directory: none read");
    assert.is(config.insecure, true);
  } finally {
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});

test("keys may be limited to products; a key given twice with different products is refused", async () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-config-"));
  const [limited, open] = [generateKey(), generateKey()];
  try {
    const file = path.join(stateDir, "config.json");
    fs.writeFileSync(file, JSON.stringify({ keys: [{ key: limited.hex, products: ["alpha"] }, open.hex] }), {
      mode: 0o600,
    });
    const config = resolveConfig({ stateDir }, {});
    assert.equal(config.keys, [{ key: limited.hex, products: ["alpha"] }, { key: open.hex, products: null }]);
    const { scopes } = await loadAgentKeys(config, false);
    assert.equal([...scopes.values()], [["alpha"], null]);
    config.keys.push({ key: limited.hex.toUpperCase(), products: null });
    const twice = await loadAgentKeys(config, false).then(() => null, (e) => e as Error);
    assert.instance(twice, ConfigError);
    assert.match(twice!.message, /given twice with different products \(products alpha; every product\)/);
    assert.match(error(`{ "keys": [{ "key": "${open.hex}", "products": [] }] }`), /"keys" \(at 0/);
  } finally {
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});

test("a key file's line may limit its key to products; a client reading the file takes the key alone", async () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-config-"));
  const [limited, open] = [generateKey(), generateKey()];
  try {
    const file = path.join(stateDir, "keys");
    fs.writeFileSync(file, `# keys\n${limited.hex} products=alpha,beta  # the build key\n\n${open.hex}\n`, {
      mode: 0o600,
    });
    const config = resolveConfig({ stateDir, keyFile: file }, {});
    const { scopes } = await loadAgentKeys(config, false);
    assert.equal([...scopes.values()], [["alpha", "beta"], null]);
    assert.equal(readKeyFile(file), [limited.hex, open.hex]);
    fs.writeFileSync(file, `${open.hex} product=alpha\n`, { mode: 0o600 });
    const bad = await loadAgentKeys(config, false).then(() => null, (e) => e as Error);
    assert.instance(bad, ConfigError);
    assert.match(bad!.message, /line 1 of .*keys: "product=alpha" is not products=name,name/);
  } finally {
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});

test("keys may be given the update right, in the config file or a key file; none has it unless given", async () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-config-"));
  fs.chmodSync(stateDir, 0o700);
  const [updater, limited, plain] = [generateKey(), generateKey(), generateKey()];
  try {
    const file = path.join(stateDir, "keys");
    fs.writeFileSync(file, `${limited.hex} rights=update products=alpha\n${plain.hex}\n`, { mode: 0o600 });
    const configFile = path.join(stateDir, "config.json");
    const settings = { keys: [{ key: updater.hex, rights: ["update"] }], releaseKeys: ["AB".repeat(32)] };
    fs.writeFileSync(configFile, JSON.stringify(settings), { mode: 0o600 });
    const config = resolveConfig({ stateDir, keyFile: file }, {});
    assert.equal(config.releaseKeys, ["ab".repeat(32)]);
    assert.is(config.updateMaxMiB, 512);
    const { keys, scopes } = await loadAgentKeys(config, false);
    assert.equal(keys.map((k) => k.rights ?? []), [["update"], ["update"], []]); // the config file's, then key files'
    assert.is(keyHasRight(keys, keys[2].id, "update"), false);
    assert.is(keyHasRight(keys, keys[0].id, "update"), true);
    assert.equal([...scopes.values()], [null, ["alpha"], null]);
    fs.writeFileSync(file, `${plain.hex} rights=root\n`, { mode: 0o600 });
    const bad = await loadAgentKeys(config, false).then(() => null, (e) => e as Error);
    assert.match(bad!.message, /line 1 of .*keys: "rights=root" is not products=name,name and\/or rights=update/);
    fs.writeFileSync(configFile, JSON.stringify({ keys: [{ key: plain.hex, rights: ["admin"] }] }), { mode: 0o600 });
    const refused = (() => {
      try {
        resolveConfig({ stateDir }, {});
      } catch (e) {
        return (e as Error).message;
      }
    })();
    assert.match(refused ?? "", /setting "keys" \(at 0\) is .*allowed: .*"rights"\?: \["update"\]/);
  } finally {
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});

test("a product user is refused unless the agent runs as root; an unknown one is named", () => {
  const refused = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      assert.instance(e, ConfigError);
      return (e as Error).message;
    }
    throw new Error("accepted");
  };
  assert.match(
    refused(() => resolveProductUsers({ alpha: { user: "nobody" } }, 1000)),
    /"products" names a user for alpha, but the agent runs as uid 1000, not root/,
  );
  assert.match(
    refused(() => resolveProductUsers({ alpha: { user: "no-such-user-agt" } }, 0)),
    /no user "no-such-user-agt"/,
  );
  assert.match(refused(() => resolveProductUsers({ alpha: { user: 0 } }, 0)), /its user is root/);
  assert.equal(resolveProductUsers({ alpha: {} }, 1000).size, 0, "{}: the agent's user, no root needed");
  const nobody = resolveProductUsers({ alpha: { user: 65534, group: 65534 } }, 0).get("alpha")!;
  assert.equal([nobody.uid, nobody.gid], [65534, 65534]);
});

test.run();
