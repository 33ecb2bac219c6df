// Cognito's variant of SRP-6a, the client side: what amazon-cognito-identity-js (and pycognito) compute,
// with BigInt for the group arithmetic and WebCrypto for SHA-256, HMAC and HKDF. No dependencies.

const N_HEX =
  "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD" +
  "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
  "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F" +
  "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
  "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510" +
  "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7" +
  "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C" +
  "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF";

/** RFC 5054's 3072-bit prime, the one every AWS SDK uses. */
export const N = BigInt(`0x${N_HEX}`);
/** The generator. */
export const g = 2n;

const INFO = new TextEncoder().encode("Caldera Derived Key");
const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function subtle() {
  const crypto = globalThis.crypto;
  if (!crypto?.subtle) throw new Error("This browser cannot sign in securely (WebCrypto is unavailable).");
  return crypto.subtle;
}

/** Hex of a non-negative BigInt as AWS hashes it: even length, with a leading 00 when the top bit is set. */
export function padHex(value) {
  const hex = value.toString(16);
  if (hex.length % 2 === 1) return `0${hex}`;
  return "89abcdef".includes(hex[0]) ? `00${hex}` : hex;
}

/** Bytes of an even-length hex string. */
export function hexToBytes(hex) {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/** Lower-case hex of bytes. */
export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Standard base64 of bytes. */
export function toBase64(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

/** Bytes of standard base64. */
export function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await subtle().digest("SHA-256", bytes));
}

async function hashToBigInt(bytes) {
  return BigInt(`0x${bytesToHex(await sha256(bytes))}`);
}

function mod(value, modulus) {
  const r = value % modulus;
  return r < 0n ? r + modulus : r;
}

/** base^exponent mod modulus by square-and-multiply. */
export function modPow(base, exponent, modulus) {
  let result = 1n;
  let b = mod(base, modulus);
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % modulus;
    b = (b * b) % modulus;
    e >>= 1n;
  }
  return result;
}

/** k = H(pad(N) || pad(g)). */
export async function multiplier() {
  return hashToBigInt(concat(hexToBytes(padHex(N)), hexToBytes(padHex(g))));
}

/** A fresh client secret `a` (128 random bytes mod N, as the AWS SDKs draw it) and A = g^a mod N. */
export function clientKeys(random = (n) => globalThis.crypto.getRandomValues(new Uint8Array(n))) {
  for (;;) {
    const a = BigInt(`0x${bytesToHex(random(128))}`) % N;
    const A = modPow(g, a, N);
    if (a !== 0n && A !== 0n) return { a, A };
  }
}

/**
 * The 16-byte key proving the password, from the server's SALT and SRP_B (hex strings):
 * x = H(pad(salt) || H(poolName + userIdForSrp + ":" + password)), u = H(pad(A) || pad(B)),
 * S = (B - k·g^x)^(a + u·x) mod N, key = HKDF-SHA256(ikm pad(S), salt pad(u), "Caldera Derived Key").
 */
export async function passwordKey({ poolName, userIdForSrp, password, a, A, saltHex, srpBHex }) {
  const B = BigInt(`0x${srpBHex}`);
  if (B % N === 0n) throw new Error("The server sent an invalid SRP value.");
  const u = await hashToBigInt(concat(hexToBytes(padHex(A)), hexToBytes(padHex(B))));
  if (u === 0n) throw new Error("The server sent an invalid SRP value.");
  const identity = await sha256(new TextEncoder().encode(`${poolName}${userIdForSrp}:${password}`));
  const x = await hashToBigInt(concat(hexToBytes(padHex(BigInt(`0x${saltHex}`))), identity));
  const k = await multiplier();
  const S = modPow(mod(B - k * modPow(g, x, N), N), a + u * x, N);
  const ikm = await subtle().importKey("raw", hexToBytes(padHex(S)), "HKDF", false, ["deriveBits"]);
  const bits = await subtle().deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: hexToBytes(padHex(u)), info: INFO },
    ikm,
    128,
  );
  return new Uint8Array(bits);
}

/** base64(HMAC-SHA256(key, poolName || userIdForSrp || secretBlock bytes || timestamp)). */
export async function claimSignature({ key, poolName, userIdForSrp, secretBlock, timestamp }) {
  const encoder = new TextEncoder();
  const hmacKey = await subtle().importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const message = concat(
    encoder.encode(poolName),
    encoder.encode(userIdForSrp),
    fromBase64(secretBlock),
    encoder.encode(timestamp),
  );
  return toBase64(new Uint8Array(await subtle().sign("HMAC", hmacKey, message)));
}

/** A date as Cognito wants it signed: "Sun Nov 2 09:05:01 UTC 2026" (UTC, day not zero-padded). */
export function cognitoTimestamp(date) {
  const two = (n) => String(n).padStart(2, "0");
  const time = `${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())}`;
  const day = `${DAYS[date.getUTCDay()]} ${MONTHS[date.getUTCMonth()]} ${date.getUTCDate()}`;
  return `${day} ${time} UTC ${date.getUTCFullYear()}`;
}
