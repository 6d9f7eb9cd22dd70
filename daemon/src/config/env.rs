//! The environment a configuration is read from, as a lookup: the process's own variables, or a
//! test's map. Its own file, so every resolver in `config/` takes it without importing the others.

/// How the configuration reads the environment: a variable's value, if set (a map in tests).
pub type Env<'a> = dyn Fn(&str) -> Option<String> + 'a;
