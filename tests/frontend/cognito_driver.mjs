// Drives frontend/assets/app/cognito.js under Node for tests/local/test_cognito_js.py.
// Usage: node cognito_driver.mjs <scenario> '<json arguments>'; prints one JSON object on stdout.

import { AuthError, CognitoAuth } from "../../frontend/assets/app/cognito.js";
import { claimSignature, passwordKey } from "../../frontend/assets/app/srp.js";

const MINUTE = 60 * 1000;

/** localStorage's interface over a Map. */
class MemoryStorage {
  #items = new Map();
  getItem(key) {
    return this.#items.has(key) ? this.#items.get(key) : null;
  }
  setItem(key, value) {
    this.#items.set(key, String(value));
  }
  removeItem(key) {
    this.#items.delete(key);
  }
  keys() {
    return [...this.#items.keys()].sort();
  }
}

/** fetch that counts operations by X-Amz-Target, and can be taken offline. */
function recordingFetch() {
  const calls = [];
  const state = { offline: false };
  const fetcher = async (url, init) => {
    calls.push(init.headers["X-Amz-Target"].split(".").pop());
    if (state.offline) throw new TypeError("fetch failed");
    return fetch(url, init);
  };
  return { fetcher, calls, state };
}

/** A fetch that always answers `status` with `body` (or throws when `body` is an Error). */
function cannedFetch(status, body) {
  return async () => {
    if (body instanceof Error) throw body;
    return new Response(typeof body === "string" ? body : JSON.stringify(body), { status });
  };
}

function failure(error) {
  return { code: error.code, message: error.message, isAuthError: error instanceof AuthError };
}

async function outcome(promise) {
  try {
    return { ok: await promise };
  } catch (error) {
    return { error: failure(error) };
  }
}

function auth(args, extra = {}) {
  return new CognitoAuth({
    endpoint: args.endpoint,
    userPoolId: args.userPoolId,
    clientId: args.clientId,
    ...extra,
  });
}

async function raw(args, operation, body) {
  const response = await fetch(args.endpoint, {
    method: "POST",
    headers: {
      "Content-Type": "application/x-amz-json-1.1",
      "X-Amz-Target": `AWSCognitoIdentityProviderService.${operation}`,
    },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

const scenarios = {
  async signIn(args) {
    const storage = new MemoryStorage();
    const client = auth(args, { storage });
    const changes = [];
    client.onChange((state) => changes.push(state));
    const result = await outcome(client.signIn(args.username, args.password));
    return {
      result: result.ok ? { status: result.ok.status } : result,
      signedIn: client.signedIn,
      user: client.user,
      storageKeys: storage.keys(),
      idToken: client.signedIn ? await client.idToken() : null,
      changes,
    };
  },

  async forcedChange(args) {
    const storage = new MemoryStorage();
    const client = auth(args, { storage });
    const first = await client.signIn(args.username, args.password);
    const weak = await outcome(first.complete("short"));
    const strong = await outcome(first.complete(args.newPassword));
    const fresh = () => auth(args, { storage: new MemoryStorage() });
    const oldAgain = await outcome(fresh().signIn(args.username, args.password));
    const newAgain = await outcome(fresh().signIn(args.username, args.newPassword));
    return {
      first: first.status,
      weak: weak.error ?? weak.ok,
      strong: strong.error ?? strong.ok,
      user: client.user,
      oldAgain: oldAgain.error ?? oldAgain.ok,
      newAgain: newAgain.error ?? newAgain.ok,
    };
  },

  async refresh(args) {
    let offset = 0;
    const { fetcher, calls } = recordingFetch();
    const now = () => Date.now() + offset;
    const client = auth(args, { storage: new MemoryStorage(), fetch: fetcher, now });
    let changes = 0;
    client.onChange(() => {
      changes += 1;
    });
    await client.signIn(args.username, args.password);
    const first = await client.idToken();
    const callsBefore = calls.length;
    const stillFresh = await client.idToken();
    const freshCalls = calls.length - callsBefore;
    offset = 56 * MINUTE; // four minutes before the hour-long token expires
    const together = await Promise.all([client.idToken(), client.idToken(), client.idToken()]);
    const afterRefresh = await client.idToken();
    return {
      sameWhileFresh: stillFresh === first,
      freshCalls,
      refreshCalls: calls.filter((c) => c === "InitiateAuth").length - 1,
      allEqual: together.every((t) => t === together[0]),
      changed: together[0] !== first,
      reusedAfterRefresh: afterRefresh === together[0],
      changes,
      signedIn: client.signedIn,
      newToken: together[0],
    };
  },

  async refreshRefused(args) {
    let offset = 0;
    const storage = new MemoryStorage();
    const client = auth(args, { storage, now: () => Date.now() + offset });
    const seen = [];
    client.onChange((state) => seen.push(state.signedIn));
    await client.signIn(args.username, args.password);
    const refreshToken = storage.getItem("openclaw.auth.refreshToken");
    const revoked = await raw(args, "RevokeToken", { Token: refreshToken, ClientId: args.clientId });
    offset = 58 * MINUTE;
    const result = await outcome(client.idToken());
    return { revoked: revoked.status, result, signedIn: client.signedIn, storageKeys: storage.keys(), seen };
  },

  async offlineRefresh(args) {
    let offset = 0;
    const { fetcher, state } = recordingFetch();
    const storage = new MemoryStorage();
    const client = auth(args, { storage, fetch: fetcher, now: () => Date.now() + offset });
    await client.signIn(args.username, args.password);
    const token = storage.getItem("openclaw.auth.idToken");
    state.offline = true;
    offset = 57 * MINUTE;
    const beforeExpiry = await outcome(client.idToken());
    offset = 61 * MINUTE;
    const afterExpiry = await outcome(client.idToken());
    return {
      servedCurrentToken: beforeExpiry.ok === token,
      afterExpiry: afterExpiry.error ?? afterExpiry.ok,
      signedIn: client.signedIn,
    };
  },

  async signOut(args) {
    const storage = new MemoryStorage();
    const client = auth(args, { storage });
    const seen = [];
    client.onChange((state) => seen.push(state.signedIn));
    await client.signIn(args.username, args.password);
    const refreshToken = storage.getItem("openclaw.auth.refreshToken");
    await client.signOut();
    const refreshAfter = await raw(args, "InitiateAuth", {
      ClientId: args.clientId,
      AuthFlow: "REFRESH_TOKEN_AUTH",
      AuthParameters: { REFRESH_TOKEN: refreshToken },
    });
    const afterwards = await outcome(client.idToken());

    const { fetcher, state } = recordingFetch();
    const offlineStorage = new MemoryStorage();
    const offline = auth(args, { storage: offlineStorage, fetch: fetcher });
    await offline.signIn(args.username, args.password);
    state.offline = true;
    await offline.signOut();
    return {
      storageKeys: storage.keys(),
      signedIn: client.signedIn,
      user: client.user,
      seen,
      refreshAfter: refreshAfter.body.__type ?? refreshAfter.status,
      idTokenAfter: afterwards.error ?? afterwards.ok,
      offlineStorageKeys: offlineStorage.keys(),
      offlineSignedIn: offline.signedIn,
    };
  },

  async crossTab(args) {
    // A browser's window: an EventTarget the "storage" event reaches, for the other tab's writes.
    const window = new EventTarget();
    globalThis.addEventListener = window.addEventListener.bind(window);
    globalThis.removeEventListener = window.removeEventListener.bind(window);
    const storage = new MemoryStorage();
    const here = auth(args, { storage });
    const there = auth(args, { storage });
    const seen = [];
    const unsubscribe = here.onChange((state) => seen.push(state.signedIn));
    const storageEvent = (key, storageArea) => Object.assign(new Event("storage"), { key, storageArea });
    await there.signIn(args.username, args.password);
    window.dispatchEvent(storageEvent("openclaw.auth.idToken", storage));
    await there.signOut();
    window.dispatchEvent(storageEvent("openclaw.auth.idToken", new MemoryStorage()));
    window.dispatchEvent(storageEvent("unrelated", storage));
    window.dispatchEvent(storageEvent("openclaw.auth.idToken", storage));
    unsubscribe();
    window.dispatchEvent(storageEvent(null, storage));
    return { seen, signedInHere: here.signedIn };
  },

  async faults(args) {
    const cases = {
      offline: cannedFetch(0, new TypeError("fetch failed")),
      throttled: cannedFetch(400, { __type: "TooManyRequestsException", message: "Rate exceeded" }),
      limited: cannedFetch(400, { __type: "LimitExceededException", message: "Attempt limit exceeded" }),
      tooMany: cannedFetch(429, ""),
      reset: cannedFetch(400, { __type: "PasswordResetRequiredException", message: "Reset required" }),
      unconfirmed: cannedFetch(400, { __type: "com.amazon#UserNotConfirmedException", message: "x" }),
      disabled: cannedFetch(400, { __type: "NotAuthorizedException", message: "User is disabled." }),
      broken: cannedFetch(500, "<html>oops</html>"),
    };
    const results = {};
    for (const [name, fetcher] of Object.entries(cases)) {
      const client = auth(args, { storage: new MemoryStorage(), fetch: fetcher });
      results[name] = (await outcome(client.signIn("someone@example.com", "Some-password-1"))).error;
    }
    return results;
  },

  async vector(args) {
    const key = await passwordKey({
      poolName: args.poolName,
      userIdForSrp: args.userIdForSrp,
      password: args.password,
      a: BigInt(`0x${args.a}`),
      A: BigInt(`0x${args.A}`),
      saltHex: args.salt,
      srpBHex: args.B,
    });
    const signature = await claimSignature({
      key,
      poolName: args.poolName,
      userIdForSrp: args.userIdForSrp,
      secretBlock: args.secretBlock,
      timestamp: args.timestamp,
    });
    return { key: Buffer.from(key).toString("hex"), signature };
  },
};

const [scenario, json] = process.argv.slice(2);
const result = await scenarios[scenario](JSON.parse(json ?? "{}"));
process.stdout.write(`${JSON.stringify(result)}\n`);
