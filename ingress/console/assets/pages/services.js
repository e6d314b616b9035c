// Services (`/ui/services`): every registered service, its type, handlers and deployment.

import { h, fill, section, table, pageLink, message } from '../dom.js';
import { get } from '../api.js';

export async function render(ctx) {
  ctx.setTitle('Services');
  const { services } = await get('/services');
  if (ctx.signal.aborted) return;
  fill(
    ctx.main,
    h('h1', null, 'Services'),
    services.length
      ? section(
          `${services.length} services`,
          table(
            ['Service', 'Type', 'Handlers', 'Public', 'Revision', 'Deployment'],
            [...services]
              .sort((a, b) => a.name.localeCompare(b.name))
              .map((s) => [
                pageLink(s.name, 'services', s.name),
                s.ty,
                s.handlers.map((handler) => handler.name).join(', '),
                s.public ? 'yes' : 'no',
                String(s.revision),
                pageLink(s.deployment_id, 'deployments', s.deployment_id),
              ]),
            { id: 'services' },
          ),
        )
      : message('info', 'No services yet: register a deployment on the ', pageLink('Deployments', 'deployments'), ' page.'),
  );
}
