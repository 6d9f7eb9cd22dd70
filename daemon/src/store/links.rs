//! What the store keeps for logins beyond the token: the key that signs login links (made once,
//! replaced when links are revoked) and the Zerodha user kited pinned.

use crate::store::{Store, StoreError, PINNED_USER, TICKET_KEY, TICKET_KEY_LEN};

impl Store {
    /// The key that signs login tickets: made (random) and flushed the first time, then the same
    /// one on every start, so links already sent keep working after a restart.
    pub fn ticket_key(&self) -> Result<[u8; TICKET_KEY_LEN], StoreError> {
        if let Some(bytes) = self.with_db(|db| db.keys.get(TICKET_KEY))? {
            return bytes.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt(format!(
                    "the login ticket key is not {TICKET_KEY_LEN} bytes"
                ))
            });
        }
        let key = self.rotate_ticket_key()?;
        self.keep_private()?;
        Ok(key)
    }

    /// A new random ticket key in place of the old one, on disk before it is returned: every
    /// link signed with the old key fails from now on, after a restart too.
    pub fn rotate_ticket_key(&self) -> Result<[u8; TICKET_KEY_LEN], StoreError> {
        let key: [u8; TICKET_KEY_LEN] = rand::random();
        self.write_flushed(|db| db.keys.insert(TICKET_KEY, &key[..]))?;
        Ok(key)
    }

    /// The Zerodha user id kited pinned (the first it saw), if any.
    pub fn pinned_user(&self) -> Result<Option<String>, StoreError> {
        let bytes = self.with_db(|db| db.keys.get(PINNED_USER))?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Pins `user_id` (or with `None` unpins), on disk before it returns.
    pub fn set_pinned_user(&self, user_id: Option<&str>) -> Result<(), StoreError> {
        self.write_flushed(|db| match user_id {
            Some(user_id) => db.keys.insert(PINNED_USER, user_id.as_bytes()),
            None => db.keys.remove(PINNED_USER),
        })
    }
}
