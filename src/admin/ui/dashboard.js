import { html } from './api.js';
export function Dashboard() { return html`<section><h1>Dashboard</h1><p>Coming soon.</p></section>`; }
