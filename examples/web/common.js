// Shared by the examples: where the relay is, and its client module (served by the relay).
const params = new URLSearchParams(location.search);
export const relayHost = params.get('relay') ?? `${location.hostname || '127.0.0.1'}:8080`;
export const relayUrl = `ws://${relayHost}/`;
export const { RelayClient } = await import(`http://${relayHost}/client.js`);

/** Shows the client's state in element `el`. */
export function showState(client, el) {
  const paint = () => {
    el.textContent = client.state;
    el.dataset.state = client.state;
  };
  client.on('state', paint);
  paint();
}
