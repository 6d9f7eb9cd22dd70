// ES module entry: the same objects as the CommonJS entry.
import client from './index.js';

export const { getToken, session, kite, close, socketPath, Session, KitedError, NotRunning, LoginRequired } = client;
export default client;
