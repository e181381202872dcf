/**
 * psched's library API: start the services from code, or open a store.
 * Everything else in src/ is internal.
 */
export { createDispatcher, type Dispatcher } from './dispatcher/app.ts';
export { createMainServer, type MainServer } from './main/app.ts';
export { dispatcherConfig, mainConfig, ConfigError, type DispatcherConfig, type MainConfig } from './config.ts';
export { openDispatcherStore, openMainStore } from './stores/index.ts';
export type { DispatcherStore, StoredMessage, MessageStatus } from './dispatcher/store.ts';
export type { MainStore, Post } from './main/store.ts';
export { verifySignature, signHeader, SIGNATURE_HEADER } from './protocol/signing.ts';
export type { DeliveryPayload } from './protocol/messages.ts';
export { systemClock, type Clock } from './clock.ts';
