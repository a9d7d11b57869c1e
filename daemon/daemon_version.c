/* daemon_version.c - the daemon's identity string, shared by aptomod and `aptomo version`. */
const char *aptd_version(void) { return APTOMO_VERSION; }
