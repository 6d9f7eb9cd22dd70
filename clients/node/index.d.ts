// Types for kited-client. `kite()` returns the official client's own type, from the optional
// peer dependency `kiteconnect`.
import type { Connect, KiteConnectParams } from 'kiteconnect';

/** Where the token comes from. Every field is optional. */
export interface SourceOptions {
  /** Profile name: picks the socket `PROFILE.sock` and the Redis key `kite:PROFILE:token`. Default `KITED_PROFILE`, else `default`. */
  profile?: string;
  /** kited's socket path; wins over `KITED_SOCKET` and the profile's default path. */
  socket?: string;
  /** Seconds to wait for a login instead of failing at once with LoginRequired. */
  wait?: number;
  /** Read from Redis instead of the socket (default: `KITED_REDIS_URL`). `redis://` or `rediss://`. */
  redisUrl?: string;
  /** Redis ACL user (default: the URL's). */
  redisUsername?: string;
  /** Redis password (default: `KITED_REDIS_PASSWORD`, else the URL's). */
  redisPassword?: string;
}

/** The api key, the access token and when it expires. Printing it or `JSON.stringify` never shows the token. */
export declare class Session {
  readonly apiKey: string;
  readonly accessToken: string;
  readonly expiresAt: Date;
  toJSON(): { apiKey: string; accessToken: string; expiresAt: string };
}

/** A KiteConnect client that kited keeps current, with `close()` to stop following. */
export type KitedKiteConnect = Connect & {
  /** The api key in use. */
  api_key: string;
  /** The access token in use, replaced on every new login. */
  access_token: string | null;
  /** Stops following new tokens. The client keeps its last token. */
  close(): void;
};

/** `kite()` options: where the token comes from, plus anything for the KiteConnect constructor (e.g. `root`, `timeout`). */
export type KiteOptions = SourceOptions &
  Partial<Omit<KiteConnectParams, 'api_key' | 'access_token'>> & {
    /** The KiteConnect class to use (default: `require('kiteconnect').KiteConnect`). */
    KiteConnect?: new (params: KiteConnectParams) => Connect;
  };

/** The access token alone. */
export declare function getToken(opts?: SourceOptions): Promise<string>;
/** The api key, the access token and its expiry. */
export declare function session(opts?: SourceOptions): Promise<Session>;
/** A KiteConnect client with the api key and token set, kept current; never retries a failed call. */
export declare function kite(opts?: KiteOptions): Promise<KitedKiteConnect>;
/** Stops following for every client `kite()` made. */
export declare function close(): void;
/** The socket path the options (and environment) lead to, as kitectl finds it. */
export declare function socketPath(opts?: Pick<SourceOptions, 'profile' | 'socket'>): string;

/** Anything that went wrong between this program and kited (or Redis). */
export declare class KitedError extends Error {
  /** kited's error kind (`not_configured`, `kite`, ...) or this library's own: `not_running`, `untrusted`, `protocol`, `redis`, `no_kiteconnect`, `bad_request`. */
  readonly kind: string;
  constructor(kind: string, message: string);
}
/** kited cannot be reached (kitectl's exit 3). */
export declare class NotRunning extends KitedError {
  constructor(message: string);
}
/** No valid token: someone must log in (kitectl's exit 4). */
export declare class LoginRequired extends KitedError {
  constructor(message: string);
}
