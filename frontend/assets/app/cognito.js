// Sign-in against the Cognito user pool with SRP, straight to Cognito's JSON API with fetch (the
// unauthenticated operations need no SigV4). Tokens live in `storage` under "openclaw.auth."; the ID token
// is refreshed shortly before it expires. Tokens and passwords are never logged.

import { claimSignature, clientKeys, cognitoTimestamp, passwordKey } from "./srp.js";

const PREFIX = "openclaw.auth.";
const KEYS = {
  id: `${PREFIX}idToken`,
  access: `${PREFIX}accessToken`,
  refresh: `${PREFIX}refreshToken`,
  expiresAt: `${PREFIX}expiresAt`,
};
const REFRESH_MARGIN_MS = 5 * 60 * 1000;
const SIGN_OUT_TIMEOUT_MS = 5000;

const MESSAGES = {
  NotAuthorized: "Incorrect email or password.",
  Disabled: "This account is disabled. Ask the administrator to enable it.",
  UserNotConfirmed:
    "This account is not confirmed yet. Confirm it with the code sent by email, or ask the administrator.",
  PasswordResetRequired:
    "Your password must be reset before you can sign in. Ask the administrator for a new one.",
  InvalidPassword:
    "That password is not allowed. Use a longer one that mixes upper- and lower-case letters, numbers and symbols.",
  TooManyRequests: "Too many attempts. Wait a minute, then try again.",
  Network: "Cannot reach the sign-in service. Check your connection, then try again.",
  SessionExpired: "Your session has ended. Please sign in again.",
  SignInTimedOut: "The sign-in took too long. Please sign in again.",
  Unsupported: "This account needs a sign-in step this page does not support.",
  Unknown: "Signing in failed. Try again in a moment.",
};

/** A sign-in failure: `code` for the program, `message` a sentence for the user. */
export class AuthError extends Error {
  /**
   * @param {"NotAuthorized"|"UserNotConfirmed"|"PasswordResetRequired"|"InvalidPassword"|"TooManyRequests"|
   *         "Network"|"SessionExpired"|"Unknown"} code
   * @param {string} message
   */
  constructor(code, message = MESSAGES[code] ?? MESSAGES.Unknown) {
    super(message);
    this.name = "AuthError";
    this.code = code;
  }
}

/** The AuthError for a Cognito error answer (`__type` may carry a namespace before "#"). */
function errorFor(status, body) {
  const type = String(body?.__type ?? "").split("#").pop();
  const said = String(body?.message ?? "");
  switch (type) {
    case "NotAuthorizedException":
      if (/disabled/i.test(said)) return new AuthError("NotAuthorized", MESSAGES.Disabled);
      if (/session/i.test(said)) return new AuthError("SessionExpired", MESSAGES.SignInTimedOut);
      return new AuthError("NotAuthorized");
    case "UserNotFoundException":
      return new AuthError("NotAuthorized");
    case "UserNotConfirmedException":
      return new AuthError("UserNotConfirmed");
    case "PasswordResetRequiredException":
      return new AuthError("PasswordResetRequired");
    case "InvalidPasswordException":
      return new AuthError("InvalidPassword");
    case "TooManyRequestsException":
    case "TooManyFailedAttemptsException":
    case "LimitExceededException":
      return new AuthError("TooManyRequests");
    default:
      return new AuthError(status === 429 ? "TooManyRequests" : "Unknown");
  }
}

/** The claims of a JWT, unverified (for display and expiry only: the servers verify). */
function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")), (c) =>
      c.charCodeAt(0),
    );
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

export class CognitoAuth {
  #endpoint;
  #poolName;
  #clientId;
  #storage;
  #fetch;
  #now;
  #listeners = new Set();
  #refreshing = null;
  #onStorage = (event) => {
    if (event.storageArea != null && event.storageArea !== this.#storage) return;
    if (event.key === null || event.key === KEYS.id) this.#emit();
  };

  /**
   * @param {{endpoint: string, userPoolId: string, clientId: string, storage?: Storage,
   *          fetch?: typeof fetch, now?: () => number}} options
   */
  constructor({
    endpoint,
    userPoolId,
    clientId,
    storage = globalThis.localStorage,
    fetch = globalThis.fetch.bind(globalThis),
    now = () => Date.now(),
  }) {
    const poolName = String(userPoolId).split("_")[1];
    if (!endpoint || !poolName || !clientId) {
      throw new Error("CognitoAuth needs an endpoint, a userPoolId like us-east-1_Abc and a clientId");
    }
    this.#endpoint = endpoint;
    this.#poolName = poolName;
    this.#clientId = clientId;
    this.#storage = storage;
    this.#fetch = fetch;
    this.#now = now;
  }

  /** Whether a refresh token is stored. */
  get signedIn() {
    return Boolean(this.#storage.getItem(KEYS.refresh));
  }

  /** `{username, sub, email}` from the stored ID token, or null. */
  get user() {
    const token = this.#storage.getItem(KEYS.id);
    const claims = token ? claimsOf(token) : null;
    if (!claims || !this.signedIn) return null;
    return {
      username: claims["cognito:username"] ?? null,
      sub: claims.sub ?? null,
      email: claims.email ?? null,
    };
  }

  /**
   * Sign in with SRP. Resolves `{status: "signedIn"}`, or `{status: "newPasswordRequired", complete}` when
   * the account has a temporary password; throws AuthError.
   */
  async signIn(username, password) {
    const result = await this.#verifyPassword(String(username).trim(), password);
    if (result.AuthenticationResult) {
      this.#store(result.AuthenticationResult);
      return { status: "signedIn" };
    }
    if (result.ChallengeName !== "NEW_PASSWORD_REQUIRED") {
      throw new AuthError("Unknown", MESSAGES.Unsupported);
    }
    let challenge = result;
    const complete = async (newPassword) => {
      // A Cognito session is single-use: after a refused new password, prove the old one again first.
      if (!challenge) {
        const again = await this.#verifyPassword(String(username).trim(), password);
        if (again.AuthenticationResult) {
          this.#store(again.AuthenticationResult);
          return { status: "signedIn" };
        }
        if (again.ChallengeName !== "NEW_PASSWORD_REQUIRED") {
          throw new AuthError("Unknown", MESSAGES.Unsupported);
        }
        challenge = again;
      }
      const { Session, ChallengeParameters } = challenge;
      challenge = null;
      const answer = await this.#call("RespondToAuthChallenge", {
        ClientId: this.#clientId,
        ChallengeName: "NEW_PASSWORD_REQUIRED",
        Session,
        ChallengeResponses: {
          USERNAME: ChallengeParameters?.USER_ID_FOR_SRP ?? username,
          NEW_PASSWORD: newPassword,
        },
      });
      if (!answer.AuthenticationResult) throw new AuthError("Unknown", MESSAGES.Unsupported);
      this.#store(answer.AuthenticationResult);
      return { status: "signedIn" };
    };
    return { status: "newPasswordRequired", complete };
  }

  /**
   * A valid ID token, refreshed when it expires within 5 minutes (concurrent callers share one refresh).
   * Throws AuthError("SessionExpired") when there is no session or Cognito refuses the refresh token.
   */
  async idToken() {
    const id = this.#storage.getItem(KEYS.id);
    const refresh = this.#storage.getItem(KEYS.refresh);
    if (!refresh) throw new AuthError("SessionExpired");
    const expiresAt = Number(this.#storage.getItem(KEYS.expiresAt)) || 0;
    if (id && expiresAt - this.#now() > REFRESH_MARGIN_MS) return id;
    this.#refreshing ??= this.#refresh(refresh).finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /** Revoke the refresh token (best effort) and forget every token, even offline. */
  async signOut() {
    const refresh = this.#storage.getItem(KEYS.refresh);
    this.#clear();
    this.#emit();
    if (!refresh) return;
    const signal = globalThis.AbortSignal?.timeout?.(SIGN_OUT_TIMEOUT_MS);
    try {
      await this.#call("RevokeToken", { Token: refresh, ClientId: this.#clientId }, signal);
    } catch {
      // Offline or refused: the tokens are gone from this browser either way, and expire on their own.
    }
  }

  /**
   * Call `callback({signedIn, user})` on sign-in, sign-out and refresh, here or in another tab.
   * Returns a function that unsubscribes.
   */
  onChange(callback) {
    this.#listeners.add(callback);
    if (this.#listeners.size === 1) globalThis.addEventListener?.("storage", this.#onStorage);
    return () => {
      if (this.#listeners.delete(callback) && this.#listeners.size === 0) {
        globalThis.removeEventListener?.("storage", this.#onStorage);
      }
    };
  }

  async #verifyPassword(username, password) {
    const { a, A } = clientKeys();
    const started = await this.#call("InitiateAuth", {
      ClientId: this.#clientId,
      AuthFlow: "USER_SRP_AUTH",
      AuthParameters: { USERNAME: username, SRP_A: A.toString(16) },
    });
    if (started.ChallengeName !== "PASSWORD_VERIFIER") {
      throw new AuthError("Unknown", MESSAGES.Unsupported);
    }
    const { USER_ID_FOR_SRP, USERNAME, SALT, SRP_B, SECRET_BLOCK } = started.ChallengeParameters ?? {};
    const timestamp = cognitoTimestamp(new Date());
    let signature;
    try {
      const key = await passwordKey({
        poolName: this.#poolName,
        userIdForSrp: USER_ID_FOR_SRP,
        password,
        a,
        A,
        saltHex: SALT,
        srpBHex: SRP_B,
      });
      signature = await claimSignature({
        key,
        poolName: this.#poolName,
        userIdForSrp: USER_ID_FOR_SRP,
        secretBlock: SECRET_BLOCK,
        timestamp,
      });
    } catch {
      // A challenge without the fields SRP needs: not something the user can fix.
      throw new AuthError("Unknown");
    }
    return this.#call("RespondToAuthChallenge", {
      ClientId: this.#clientId,
      ChallengeName: "PASSWORD_VERIFIER",
      ...(started.Session ? { Session: started.Session } : {}),
      ChallengeResponses: {
        USERNAME: USERNAME ?? USER_ID_FOR_SRP,
        PASSWORD_CLAIM_SECRET_BLOCK: SECRET_BLOCK,
        PASSWORD_CLAIM_SIGNATURE: signature,
        TIMESTAMP: timestamp,
      },
    });
  }

  async #refresh(refresh) {
    let result;
    try {
      result = await this.#call("InitiateAuth", {
        ClientId: this.#clientId,
        AuthFlow: "REFRESH_TOKEN_AUTH",
        AuthParameters: { REFRESH_TOKEN: refresh },
      });
    } catch (error) {
      if (this.#storage.getItem(KEYS.refresh) !== refresh) return this.#storedToken();
      if (error.code === "NotAuthorized" || error.code === "SessionExpired") {
        this.#clear();
        this.#emit();
        throw new AuthError("SessionExpired");
      }
      // Offline or throttled: the current token still serves until it really expires.
      const id = this.#storage.getItem(KEYS.id);
      if (id && (Number(this.#storage.getItem(KEYS.expiresAt)) || 0) > this.#now()) return id;
      throw error;
    }
    // Signed out (or in again, in another tab) meanwhile: that session's tokens win.
    if (this.#storage.getItem(KEYS.refresh) !== refresh) return this.#storedToken();
    this.#store({ RefreshToken: refresh, ...result.AuthenticationResult });
    return result.AuthenticationResult.IdToken;
  }

  #storedToken() {
    const id = this.#storage.getItem(KEYS.id);
    const fresh = (Number(this.#storage.getItem(KEYS.expiresAt)) || 0) > this.#now();
    if (id && fresh && this.signedIn) return id;
    throw new AuthError("SessionExpired");
  }

  async #call(operation, body, signal) {
    let response;
    try {
      response = await this.#fetch(this.#endpoint, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-amz-json-1.1",
          "X-Amz-Target": `AWSCognitoIdentityProviderService.${operation}`,
        },
        body: JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
        signal,
      });
    } catch {
      throw new AuthError("Network");
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) throw errorFor(response.status, data);
    if (data === null || typeof data !== "object") throw new AuthError("Unknown");
    return data;
  }

  #store({ IdToken, AccessToken, RefreshToken, ExpiresIn }) {
    if (!IdToken || !AccessToken || !RefreshToken) throw new AuthError("Unknown");
    const seconds = Number(ExpiresIn) > 0 ? Number(ExpiresIn) : 3600;
    this.#storage.setItem(KEYS.refresh, RefreshToken);
    this.#storage.setItem(KEYS.access, AccessToken);
    this.#storage.setItem(KEYS.expiresAt, String(this.#now() + seconds * 1000));
    // Written last: other tabs react to this key, and by then the rest is in place.
    this.#storage.setItem(KEYS.id, IdToken);
    this.#emit();
  }

  #clear() {
    // The refresh token goes first, so a tab reacting to the ID token's removal already sees signed-out.
    for (const key of [KEYS.refresh, KEYS.access, KEYS.expiresAt, KEYS.id]) this.#storage.removeItem(key);
  }

  #emit() {
    const state = { signedIn: this.signedIn, user: this.user };
    for (const listener of [...this.#listeners]) {
      try {
        listener(state);
      } catch (error) {
        console.error("an auth listener failed", error?.name ?? "Error");
      }
    }
  }
}
